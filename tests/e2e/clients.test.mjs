// End-to-end test: the official JavaScript clients against the real
// ferrocable binary, which talks to a Python gRPC app (rpc_app.py) and to a
// real redis-server. run.sh starts all of those and passes, via environment:
//   E2E_CABLE_PORT     port of ferrocable (127.0.0.1)
//   E2E_BROADCAST_KEY  the --broadcast_key given to ferrocable
//   E2E_RPC_LOG        the JSON-lines log the RPC app writes (one call a line)
//
// Run: node --test tests/e2e/clients.test.mjs (through tests/e2e/run.sh).
// The top-level tests run in order and share the clients they create.

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import WS from 'ws'
import { createCable } from '@anycable/core'

const require = createRequire(import.meta.url)
// @rails/actioncable ships a UMD build as "main": load it as CommonJS.
const ActionCable = require('@rails/actioncable')

const PORT = Number(process.env.E2E_CABLE_PORT)
const KEY = process.env.E2E_BROADCAST_KEY
const RPC_LOG = process.env.E2E_RPC_LOG
if (!PORT || !KEY || !RPC_LOG) {
  throw new Error('E2E_CABLE_PORT, E2E_BROADCAST_KEY and E2E_RPC_LOG must be set (use tests/e2e/run.sh)')
}
const HTTP = `http://127.0.0.1:${PORT}`
const CHAT_1 = { channel: 'ChatChannel', room: '1' }

// --- Node shims for @rails/actioncable ------------------------------------
// Its ConnectionMonitor listens for the browser's "visibilitychange" on the
// global object; Node 20 has no global addEventListener.
globalThis.addEventListener ??= () => {}
globalThis.removeEventListener ??= () => {}

// One WebSocket class for every actioncable consumer (the library keeps it in
// a module-wide `adapters.WebSocket`). Each consumer's URL carries a `client`
// query parameter naming the entry below, which supplies its request headers
// (the cookie) and records every socket opened and every frame received.
const clients = new Map()
function actioncableClient (name, headers) {
  const record = { name, headers, sockets: [], frames: [] }
  clients.set(name, record)
  return record
}
class HeaderInjectingWebSocket extends WS {
  constructor (url, protocols) {
    const name = new URL(url).searchParams.get('client')
    const record = clients.get(name)
    if (!record) throw new Error(`no actioncable client registered as ${name}`)
    super(url, protocols, { headers: record.headers })
    record.sockets.push(this)
    this.addEventListener('message', (event) => {
      record.frames.push(JSON.parse(event.data))
    })
  }
}
ActionCable.adapters.WebSocket = HeaderInjectingWebSocket
ActionCable.logger.enabled = !!process.env.E2E_DEBUG

function cableUrl (client) {
  return `ws://127.0.0.1:${PORT}/cable?client=${encodeURIComponent(client)}`
}

// --- helpers ----------------------------------------------------------------
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor (what, predicate, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = predicate()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(20)
  }
}

function rpcLog () {
  return readFileSync(RPC_LOG, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line))
}

async function broadcast (body, key = KEY) {
  const headers = { 'Content-Type': 'application/json' }
  if (key !== null) headers.Authorization = `Bearer ${key}`
  const res = await fetch(`${HTTP}/_broadcast`, { method: 'POST', headers, body })
  await res.text()
  return res.status
}

const isChat = (msg, user, text) => msg && msg.user === user && msg.text === text

// --- shared state ---------------------------------------------------------
let alice, aliceSub, aliceRecord
const aliceEvents = [] // {kind: 'received'|'connected'|..., data}
let bob, bobChat
const bobMessages = []
let nobody, nobodyRecord
const nobodyEvents = []
let unauthorizedAt = 0

after(() => {
  // Leave no sockets or timers behind, whatever failed.
  try { alice?.disconnect() } catch {}
  try { nobody?.disconnect() } catch {}
  try { bob?.disconnect() } catch {}
})

test('server is healthy', async () => {
  const res = await fetch(`${HTTP}/health`)
  assert.equal(res.status, 200)
  await res.text()
})

test('(d) no cookie: @rails/actioncable is disconnected as unauthorized and does not reconnect', async () => {
  nobodyRecord = actioncableClient('nobody', {})
  nobody = ActionCable.createConsumer(cableUrl('nobody'))
  nobody.subscriptions.create(CHAT_1, {
    connected () { nobodyEvents.push({ kind: 'connected' }) },
    disconnected (details) { nobodyEvents.push({ kind: 'disconnected', details }) },
    received (data) { nobodyEvents.push({ kind: 'received', data }) }
  })
  const frame = await waitFor('the disconnect frame', () =>
    nobodyRecord.frames.find((f) => f.type === 'disconnect'))
  assert.deepEqual(frame, { type: 'disconnect', reason: 'unauthorized', reconnect: false })
  assert.equal(nobodyRecord.frames.some((f) => f.type === 'welcome'), false, 'no welcome for a rejected connection')
  const disconnected = await waitFor('disconnected() callback', () =>
    nobodyEvents.find((e) => e.kind === 'disconnected'))
  assert.deepEqual(disconnected.details, { willAttemptReconnect: false })
  const socket = nobodyRecord.sockets[0]
  await waitFor('the socket to close', () => socket.readyState === WS.CLOSED)
  unauthorizedAt = Date.now()
  assert.equal(nobodyRecord.sockets.length, 1)
  assert.equal(nobodyEvents.some((e) => e.kind === 'connected'), false)
  // The "did not reconnect" half is checked near the end, once more than
  // ActionCable's stale threshold (6 s) plus a poll interval has passed.
})

test('(a) @rails/actioncable: hello arrives before connected(), then speak is broadcast back', async () => {
  aliceRecord = actioncableClient('alice', { Cookie: 'user=alice' })
  alice = ActionCable.createConsumer(cableUrl('alice'))
  aliceSub = alice.subscriptions.create(CHAT_1, {
    connected (details) { aliceEvents.push({ kind: 'connected', data: details }) },
    disconnected (details) { aliceEvents.push({ kind: 'disconnected', data: details }) },
    rejected () { aliceEvents.push({ kind: 'rejected' }) },
    received (data) { aliceEvents.push({ kind: 'received', data }) }
  })
  await waitFor('alice connected()', () => aliceEvents.find((e) => e.kind === 'connected'))

  assert.equal(aliceRecord.sockets[0].protocol, 'actioncable-v1-json', 'server selected the base subprotocol')
  const kinds = aliceEvents.map((e) => e.kind)
  const helloAt = aliceEvents.findIndex((e) => e.kind === 'received' && e.data?.hello === 'alice')
  const connectedAt = kinds.indexOf('connected')
  assert.ok(helloAt >= 0, `hello transmission received (events: ${JSON.stringify(aliceEvents)})`)
  assert.ok(helloAt < connectedAt, `hello came before connected() (events: ${JSON.stringify(aliceEvents)})`)
  assert.deepEqual(aliceEvents[connectedAt].data, { reconnected: false })

  // Frame-level view of the same thing: welcome, hello, confirm; identifiers echoed byte for byte.
  const frames = aliceRecord.frames.filter((f) => f.type !== 'ping')
  assert.equal(frames[0].type, 'welcome')
  assert.deepEqual(frames[1], { identifier: aliceSub.identifier, message: { hello: 'alice' } })
  assert.deepEqual(frames[2], { type: 'confirm_subscription', identifier: aliceSub.identifier })
  // If the welcome carries a sid, it is the one sent to the app as metadata.
  if (frames[0].sid !== undefined) {
    const connect = rpcLog().find((r) => r.method === 'Connect' && r.user === 'alice')
    assert.equal(frames[0].sid, connect.sid, 'welcome sid == gRPC metadata sid')
  }

  aliceSub.perform('speak', { text: 'hi from alice' })
  const got = await waitFor('alice to receive her own broadcast', () =>
    aliceEvents.find((e) => e.kind === 'received' && isChat(e.data, 'alice', 'hi from alice')))
  assert.deepEqual(got.data, { user: 'alice', text: 'hi from alice' })
  const published = rpcLog().filter((r) => r.method === 'publish')
  assert.equal(published.length, 1, 'the app published once through Redis')
  assert.ok(published[0].receivers >= 1, 'ferrocable is subscribed to the Redis channel')
})

test('(b) @anycable/core client in the same room receives the messages', async () => {
  bob = createCable(`ws://127.0.0.1:${PORT}/cable`, {
    websocketImplementation: WS,
    websocketOptions: { headers: { Cookie: 'user=bob' } },
    protocol: 'actioncable-v1-json',
    logLevel: process.env.E2E_DEBUG ? 'debug' : 'error'
  })
  bobChat = bob.subscribeTo('ChatChannel', { room: '1' })
  bobChat.on('message', (msg) => bobMessages.push(msg))
  await bobChat.ensureSubscribed()
  assert.equal(bob.state, 'connected')
  assert.ok(bobMessages.some((m) => m?.hello === 'bob'), `bob got his hello (messages: ${JSON.stringify(bobMessages)})`)

  aliceSub.perform('speak', { text: 'hello bob' })
  await waitFor('bob to receive alice\'s message', () => bobMessages.find((m) => isChat(m, 'alice', 'hello bob')))
  await waitFor('alice to receive her message', () =>
    aliceEvents.find((e) => e.kind === 'received' && isChat(e.data, 'alice', 'hello bob')))

  await bobChat.perform('speak', { text: 'hello alice' })
  await waitFor('alice to receive bob\'s message', () =>
    aliceEvents.find((e) => e.kind === 'received' && isChat(e.data, 'bob', 'hello alice')))
  await waitFor('bob to receive his own message', () => bobMessages.find((m) => isChat(m, 'bob', 'hello alice')))
  // Bob never sees alice's hello (a transmission, not a broadcast).
  assert.equal(bobMessages.some((m) => m?.hello === 'alice'), false)

  // A second room, subscribed and then left: its streams must be gone.
  const room2 = bob.subscribeTo('ChatChannel', { room: '2' })
  await room2.ensureSubscribed()
  const room2Messages = []
  room2.on('message', (m) => room2Messages.push(m))
  const room2Id = room2.identifier
  room2.disconnect()
  await waitFor('the unsubscribe to reach the app', () =>
    rpcLog().find((r) => r.method === 'Command' && r.command === 'unsubscribe' && JSON.parse(r.identifier).room === '2'))
  assert.equal(await broadcast(JSON.stringify({ stream: 'chat_2', data: JSON.stringify({ user: 'http', text: 'to room 2' }) })), 201)
  await sleep(300)
  assert.deepEqual(room2Messages, [], `nothing delivered to the left room ${room2Id}`)
})

test('(c) HTTP broadcast reaches both clients; wrong key 401; bad body 422', async () => {
  const leak = JSON.stringify({ stream: 'chat_1', data: JSON.stringify({ user: 'http', text: 'must not arrive' }) })
  assert.equal(await broadcast(leak, 'wrongkey'), 401, 'wrong key')
  assert.equal(await broadcast(leak, null), 401, 'no key')
  assert.equal(await broadcast('this is not json'), 422, 'bad body')
  assert.equal(await broadcast(JSON.stringify({ data: 'no stream' })), 422, 'no stream')

  const good = JSON.stringify({ stream: 'chat_1', data: JSON.stringify({ user: 'http', text: 'via http' }) })
  assert.equal(await broadcast(good), 201)
  await waitFor('alice to receive the HTTP broadcast', () =>
    aliceEvents.find((e) => e.kind === 'received' && isChat(e.data, 'http', 'via http')))
  await waitFor('bob to receive the HTTP broadcast', () => bobMessages.find((m) => isChat(m, 'http', 'via http')))

  // A batch, and a non-JSON data string (delivered as the raw string).
  const batch = JSON.stringify([
    { stream: 'chat_1', data: JSON.stringify({ user: 'http', text: 'batch 1' }) },
    { stream: 'chat_1', data: 'plain text' }
  ])
  assert.equal(await broadcast(batch), 201)
  await waitFor('bob to receive the batch', () =>
    bobMessages.some((m) => isChat(m, 'http', 'batch 1')) && bobMessages.includes('plain text'))
  await waitFor('alice to receive the batch', () =>
    aliceEvents.some((e) => e.kind === 'received' && isChat(e.data, 'http', 'batch 1')) &&
    aliceEvents.some((e) => e.kind === 'received' && e.data === 'plain text'))

  const all = [...aliceEvents.map((e) => e.data), ...bobMessages]
  assert.equal(all.some((m) => m?.text === 'must not arrive'), false, 'refused broadcast was not delivered')
})

test('(e) SecretChannel is rejected (rejected() callback); an unknown channel is rejected too', async () => {
  const secretEvents = []
  alice.subscriptions.create({ channel: 'SecretChannel' }, {
    connected () { secretEvents.push('connected') },
    rejected () { secretEvents.push('rejected') }
  })
  await waitFor('rejected()', () => secretEvents.includes('rejected'))
  assert.deepEqual(secretEvents, ['rejected'])
  const rejection = aliceRecord.frames.find((f) => f.type === 'reject_subscription')
  assert.deepEqual(JSON.parse(rejection.identifier), { channel: 'SecretChannel' })

  const unknown = bob.subscribeTo('NoSuchChannel')
  await assert.rejects(unknown.ensureSubscribed(), 'unknown channel subscription is rejected')
  assert.equal(bob.state, 'connected', 'a rejected subscription leaves the connection up')
})

test('(d) the unauthorized client did not reconnect', async () => {
  const wait = unauthorizedAt + 13000 - Date.now()
  if (wait > 0) await sleep(wait)
  assert.equal(nobodyRecord.sockets.length, 1, 'actioncable opened no second socket')
  const anonymousConnects = rpcLog().filter((r) => r.method === 'Connect' && !r.user)
  assert.equal(anonymousConnects.length, 1, 'the app saw one unauthenticated Connect')
})

test('(f) after the clients disconnect, the app got exactly one Disconnect per connected client', async () => {
  alice.disconnect()
  bob.disconnect()
  nobody.disconnect()

  const connects = rpcLog().filter((r) => r.method === 'Connect' && r.user)
  assert.deepEqual(connects.map((r) => r.user).sort(), ['alice', 'bob'])
  await waitFor('a Disconnect per connected client', () =>
    rpcLog().filter((r) => r.method === 'Disconnect').length >= connects.length)
  await sleep(1000) // room for a duplicate to show up
  const log = rpcLog()
  const disconnects = log.filter((r) => r.method === 'Disconnect')
  assert.equal(disconnects.length, connects.length, `Disconnect calls: ${JSON.stringify(disconnects)}`)

  for (const connect of connects) {
    const mine = disconnects.filter((d) => d.sid === connect.sid)
    assert.equal(mine.length, 1, `one Disconnect for ${connect.user} (sid ${connect.sid})`)
    const d = mine[0]
    assert.deepEqual(JSON.parse(d.identifiers), { user: connect.user })
    // The subscriptions are the ones still held: ChatChannel room 1, with the
    // identifier exactly as that client sent it (room 2 was left; rejected
    // subscriptions never counted).
    const subscribed = log.find((r) => r.method === 'Command' && r.sid === connect.sid &&
      r.command === 'subscribe' && JSON.parse(r.identifier).channel === 'ChatChannel' &&
      JSON.parse(r.identifier).room === '1')
    assert.ok(subscribed, `${connect.user} subscribed to room 1`)
    assert.deepEqual(d.subscriptions, [subscribed.identifier], `${connect.user}'s subscriptions`)
    assert.deepEqual(JSON.parse(subscribed.identifier), CHAT_1)
    assert.deepEqual(Object.keys(d.istate), [subscribed.identifier], `${connect.user}'s istate keys`)
    assert.deepEqual(JSON.parse(d.istate[subscribed.identifier]), { room: '1' })
    assert.deepEqual(d.cstate, {})
  }
  const anonymous = log.filter((r) => r.method === 'Connect' && !r.user).map((r) => r.sid)
  assert.equal(disconnects.some((d) => anonymous.includes(d.sid)), false, 'no Disconnect for a rejected connection')
})

test('the RPC app saw no contract violation (metadata protov=v1, sid, env)', () => {
  const errors = rpcLog().filter((r) => r.method === 'error')
  assert.deepEqual(errors, [])
  const calls = rpcLog().filter((r) => ['Connect', 'Command', 'Disconnect'].includes(r.method))
  assert.ok(calls.length >= 10, `the app saw the calls (${calls.length})`)
  for (const call of calls) assert.ok(call.sid, `every call carries a sid: ${JSON.stringify(call)}`)
})
