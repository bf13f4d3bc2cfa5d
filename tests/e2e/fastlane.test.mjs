// The fast lane with the official clients against the real binary (run.sh
// starts it with --jwt_secret, --streams_secret, --public_streams and
// --turbo_streams): @anycable/core with a JWT in `?jid=`, signed and public
// streams (`streamFromSigned`, `streamFrom`) and whispers, and
// @rails/actioncable subscribing to Turbo::StreamsChannel as turbo-rails'
// <turbo-cable-stream-source> does. Tokens and signatures are made here
// with node:crypto, independently of the server's code.
//   E2E_CABLE_PORT, E2E_BROADCAST_KEY, E2E_RPC_LOG: as clients.test.mjs
//   E2E_JWT_SECRET, E2E_STREAMS_SECRET: the keys given to the binary

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createHmac } from 'node:crypto'
import { createRequire } from 'node:module'
import WS from 'ws'
import { createCable } from '@anycable/core'

const require = createRequire(import.meta.url)
const ActionCable = require('@rails/actioncable')

const PORT = Number(process.env.E2E_CABLE_PORT)
const KEY = process.env.E2E_BROADCAST_KEY
const RPC_LOG = process.env.E2E_RPC_LOG
const JWT_SECRET = process.env.E2E_JWT_SECRET
const STREAMS_SECRET = process.env.E2E_STREAMS_SECRET
if (!PORT || !KEY || !RPC_LOG || !JWT_SECRET || !STREAMS_SECRET) {
  throw new Error('run through tests/e2e/run.sh')
}
const URL_ = `ws://127.0.0.1:${PORT}/cable`
globalThis.addEventListener ??= () => {}
globalThis.removeEventListener ??= () => {}

const b64url = (s) => Buffer.from(s).toString('base64url')
function jwt (ext, expIn) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))
  const payload = b64url(JSON.stringify({ ext: JSON.stringify(ext), exp: Math.floor(Date.now() / 1000) + expIn }))
  const sig = createHmac('sha256', JWT_SECRET).update(`${header}.${payload}`).digest('base64url')
  return `${header}.${payload}.${sig}`
}
// Rails' MessageVerifier (JSON serializer, SHA256), as turbo-rails signs.
function signed (name, key = STREAMS_SECRET) {
  const data = Buffer.from(JSON.stringify(name)).toString('base64')
  return `${data}--${createHmac('sha256', key).update(data).digest('hex')}`
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
async function waitFor (what, predicate, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = predicate()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}
const rpcLog = () => readFileSync(RPC_LOG, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l))
async function broadcast (stream, data) {
  const res = await fetch(`http://127.0.0.1:${PORT}/_broadcast`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ stream, data: JSON.stringify(data) })
  })
  await res.text()
  assert.equal(res.status, 201)
}

const cables = []
function cable (url, headers = {}) {
  const c = createCable(url, {
    websocketImplementation: WS,
    websocketOptions: { headers },
    protocol: 'actioncable-v1-ext-json',
    logLevel: process.env.E2E_DEBUG ? 'debug' : 'error'
  })
  cables.push(c)
  return c
}
after(() => { for (const c of cables) { try { c.disconnect() } catch {} } })

test('JWT: welcomed without a Connect call, channels see the token identifiers', async () => {
  const before = rpcLog().filter((c) => c.method === 'Connect').length
  const carol = cable(`${URL_}?jid=${jwt({ user: 'carol' }, 60)}`)
  const chat = carol.subscribeTo('ChatChannel', { room: 'jwt' })
  const hello = []
  chat.on('message', (m) => hello.push(m))
  await chat.ensureSubscribed()
  await waitFor('the hello', () => hello.find((m) => m.hello === 'carol'))
  assert.equal(rpcLog().filter((c) => c.method === 'Connect').length, before, 'no Connect call')
  const command = rpcLog().find((c) => c.method === 'Command' && c.identifier.includes('"jwt"'))
  assert.equal(command.connection_identifiers, '{"user":"carol"}')
})

test('JWT: an expired token is token_expired, a forged one unauthorized; neither reconnects', async () => {
  for (const [token, reason] of [[jwt({ user: 'x' }, -30), 'token_expired'], [`${jwt({ user: 'x' }, 60)}x`, 'unauthorized']]) {
    const c = cable(`${URL_}?jid=${token}`)
    const closed = new Promise((resolve) => c.on('close', resolve))
    c.connect().catch(() => {})
    const event = await closed
    assert.equal(event?.reason, reason)
    await sleep(300)
    assert.equal(c.state, 'closed', 'no reconnect')
  }
})

test('signed streams: streamFromSigned receives broadcasts; a forged name is rejected', async () => {
  const dave = cable(URL_, { Cookie: 'user=dave' })
  const news = dave.streamFromSigned(signed('news:1'))
  const got = []
  news.on('message', (m) => got.push(m))
  await news.ensureSubscribed()
  await broadcast('news:1', { headline: 'fast' })
  await waitFor('the broadcast', () => got.find((m) => m.headline === 'fast'))
  const forged = dave.streamFromSigned(signed('news:1', 'wrong-key'))
  await assert.rejects(forged.ensureSubscribed())
  assert.ok(!rpcLog().some((c) => c.method === 'Command' && c.identifier.includes('$pubsub')),
    'the application never hears of $pubsub')
})

test('whispers: the other subscriber gets it, the sender and other streams do not', async () => {
  const [erin, frank, gina] = ['erin', 'frank', 'gina'].map((u) => cable(URL_, { Cookie: `user=${u}` }))
  const inbox = { erin: [], frank: [], gina: [] }
  const e = erin.streamFrom('typing:1')
  const f = frank.streamFrom('typing:1')
  const g = gina.streamFrom('typing:2')
  e.on('message', (m) => inbox.erin.push(m))
  f.on('message', (m) => inbox.frank.push(m))
  g.on('message', (m) => inbox.gina.push(m))
  await Promise.all([e.ensureSubscribed(), f.ensureSubscribed(), g.ensureSubscribed()])
  await e.whisper({ event: 'typing', user: 'erin' })
  await waitFor('frank hears erin', () => inbox.frank.find((m) => m.user === 'erin'))
  await sleep(300)
  assert.deepEqual(inbox.erin, [])
  assert.deepEqual(inbox.gina, [])
})

test('Turbo Streams: @rails/actioncable subscribes to Turbo::StreamsChannel as turbo-rails does', async () => {
  class WithCookie extends WS {
    constructor (url, protocols) { super(url, protocols, { headers: { Cookie: 'user=hank' } }) }
  }
  ActionCable.adapters.WebSocket = WithCookie
  ActionCable.logger.enabled = !!process.env.E2E_DEBUG
  const consumer = ActionCable.createConsumer(URL_)
  after(() => consumer.disconnect())
  const received = []
  const state = {}
  consumer.subscriptions.create(
    { channel: 'Turbo::StreamsChannel', signed_stream_name: signed('gid://app/Board/1') },
    { connected () { state.ok = true }, rejected () { state.rejected = true }, received (d) { received.push(d) } })
  consumer.subscriptions.create(
    { channel: 'Turbo::StreamsChannel', signed_stream_name: signed('gid://app/Board/1', 'other') },
    { rejected () { state.forgedRejected = true } })
  await waitFor('confirmed', () => state.ok)
  await waitFor('the forged one rejected', () => state.forgedRejected)
  const html = '<turbo-stream action="append" target="cards"><template>hi</template></turbo-stream>'
  await broadcast('gid://app/Board/1', html)
  await waitFor('the turbo stream', () => received.includes(html))
  assert.ok(!state.rejected)
})
