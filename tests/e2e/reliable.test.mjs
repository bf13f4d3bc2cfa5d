// End-to-end: the official @anycable/core client on actioncable-v1-ext-json
// against the ferrocable binary (Redis pub/sub broadcasts, so the memory broker) while
// messages are broadcast when it is away: after it comes back, every message
// has arrived, in order, once, with its stream position. run.sh runs it
// after clients.test.mjs, with the same environment (E2E_CABLE_PORT,
// E2E_BROADCAST_KEY). Then, on a two-node cluster of the binary with the
// Redis broker: restore on the other node, the pong timeout, and history
// evicted while away (reject_history, then live messages again).

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import WS from 'ws'
import { execFileSync } from 'node:child_process'
import { createCable } from '@anycable/core'

const PORT = Number(process.env.E2E_CABLE_PORT)
const KEY = process.env.E2E_BROADCAST_KEY
if (!PORT || !KEY) throw new Error('E2E_CABLE_PORT and E2E_BROADCAST_KEY must be set (use tests/e2e/run.sh)')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
async function waitFor (what, predicate, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = predicate()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

async function broadcast (stream, n) {
  const res = await fetch(`http://127.0.0.1:${PORT}/_broadcast`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ stream, data: JSON.stringify({ n }) })
  })
  await res.text()
  assert.equal(res.status, 201)
}

// Every frame the client received, to check positions on the wire.
const frames = []
class RecordingWS extends WS {
  constructor (url, protocols, options) {
    super(url, protocols, options)
    this.addEventListener('message', (event) => frames.push(JSON.parse(event.data)))
  }
}

let cable
after(() => { try { cable?.disconnect() } catch {} })

test('messages broadcast while the client is away arrive after it comes back, in order, once', async () => {
  cable = createCable(`ws://127.0.0.1:${PORT}/cable`, {
    websocketImplementation: RecordingWS,
    websocketOptions: { headers: { Cookie: 'user=dave' } },
    protocol: 'actioncable-v1-ext-json',
    logLevel: process.env.E2E_DEBUG ? 'debug' : 'error'
  })
  const room = cable.subscribeTo('ChatChannel', { room: 'reliable' })
  const got = []
  room.on('message', (msg) => { if (typeof msg?.n === 'number') got.push(msg.n) })
  await room.ensureSubscribed()

  await broadcast('chat_reliable', 1)
  await waitFor('message 1', () => got.includes(1))
  const first = frames.find((f) => f.message?.n === 1)
  assert.equal(first.stream_id, 'chat_reliable')
  assert.equal(first.offset, 1)
  assert.ok(first.epoch, 'an epoch')

  // Away: the socket closes; three messages are broadcast meanwhile.
  cable.disconnect()
  await waitFor('the client to be disconnected', () => ['disconnected', 'closed'].includes(cable.state))
  for (const n of [2, 3, 4]) await broadcast('chat_reliable', n)

  // Back: the client asks for what it missed; then live messages again.
  cable.connect()
  await waitFor('the missed messages', () => got.includes(4))
  await broadcast('chat_reliable', 5)
  await waitFor('message 5', () => got.includes(5))
  await sleep(300) // room for a duplicate to show up
  assert.deepEqual(got, [1, 2, 3, 4, 5], 'in order, once')
  const offsets = frames.filter((f) => typeof f.message?.n === 'number').map((f) => f.offset)
  assert.deepEqual(offsets, [1, 2, 3, 4, 5])
  assert.ok(frames.some((f) => f.type === 'confirm_history'), 'the history was confirmed')
  // The session was restored (?sid=): welcomed as such, no second subscribe.
  const welcomes = frames.filter((f) => f.type === 'welcome')
  assert.equal(welcomes.length, 2)
  assert.equal(welcomes[1].restored, true, JSON.stringify(welcomes[1]))
  assert.deepEqual(welcomes[1].restored_ids, [room.identifier])
})

// A two-node cluster of the binary (run.sh starts it: broker=redis, redisx
// broadcasts, pong_timeout 2 s, ping_interval 1 s, one real redis-server).
const NODE_A = Number(process.env.E2E_CLUSTER_A_PORT)
const NODE_B = Number(process.env.E2E_CLUSTER_B_PORT)
const REDIS_PORT = Number(process.env.E2E_REDIS_PORT)
if (!NODE_A || !NODE_B || !REDIS_PORT) throw new Error('E2E_CLUSTER_A_PORT, E2E_CLUSTER_B_PORT and E2E_REDIS_PORT must be set (use tests/e2e/run.sh)')

// A broadcast to the whole cluster: an entry of the redisx stream, which
// every node reads (each positions it the same way through the broker).
function clusterBroadcast (stream, n) {
  const payload = JSON.stringify({ stream, data: JSON.stringify({ n }) })
  execFileSync('redis-cli', ['-h', '127.0.0.1', '-p', String(REDIS_PORT), 'XADD', '__anycable__', '*', 'payload', payload])
}

// An @anycable/core client recording its frames, on node `port`.
function clusterClient (port, user, opts = {}) {
  const seen = []
  class Recording extends WS {
    constructor (url, protocols, options) {
      super(url, protocols, options)
      this.addEventListener('message', (event) => seen.push(JSON.parse(event.data)))
    }
  }
  const c = createCable(`ws://127.0.0.1:${port}/cable`, {
    websocketImplementation: Recording,
    websocketOptions: { headers: { Cookie: `user=${user}` } },
    protocol: 'actioncable-v1-ext-json',
    logLevel: process.env.E2E_DEBUG ? 'debug' : 'error',
    ...opts
  })
  after(() => { try { c.disconnect() } catch {} })
  return { cable: c, seen }
}

test('a session is restored on another node of the cluster, nothing lost, nothing twice', async () => {
  const { cable: c, seen } = clusterClient(NODE_A, 'erin', { protocolOptions: { pongs: true } })
  const room = c.subscribeTo('ChatChannel', { room: 'cluster' })
  const got = []
  room.on('message', (msg) => { if (typeof msg?.n === 'number') got.push(msg.n) })
  await room.ensureSubscribed()
  clusterBroadcast('chat_cluster', 1)
  await waitFor('message 1', () => got.includes(1))

  // Away from node A; three messages meanwhile; back on node B with its sid.
  c.disconnect()
  await waitFor('the client to be disconnected', () => ['disconnected', 'closed'].includes(c.state))
  for (const n of [2, 3, 4]) clusterBroadcast('chat_cluster', n)
  const url = new URL(c.transport.url)
  assert.ok(url.searchParams.get('sid'), `the client keeps its sid: ${url}`)
  url.port = String(NODE_B)
  c.transport.setURL(url.toString())
  c.connect()
  await waitFor('the missed messages', () => got.includes(4))
  clusterBroadcast('chat_cluster', 5)
  await waitFor('message 5', () => got.includes(5))
  await sleep(300) // room for a duplicate to show up
  assert.deepEqual(got, [1, 2, 3, 4, 5], 'in order, once')
  const offsets = seen.filter((f) => typeof f.message?.n === 'number').map((f) => f.offset)
  assert.deepEqual(offsets, [1, 2, 3, 4, 5])
  const welcomes = seen.filter((f) => f.type === 'welcome')
  assert.equal(welcomes.length, 2)
  assert.equal(welcomes[1].restored, true, JSON.stringify(welcomes[1]))
  assert.deepEqual(welcomes[1].restored_ids, [room.identifier])
  assert.ok(seen.some((f) => f.type === 'confirm_history'), 'the history was confirmed')
})

test('pong timeout: a client that does not answer pings is disconnected with no_pong; one that does stays', async () => {
  const silent = clusterClient(NODE_A, 'fay')
  const answering = clusterClient(NODE_A, 'gus', { protocolOptions: { pongs: true } })
  await Promise.all([silent.cable.connect(), answering.cable.connect()])
  const noPong = await waitFor('the no_pong disconnect', () => silent.seen.find((f) => f.type === 'disconnect'))
  assert.equal(noPong.reason, 'no_pong')
  assert.equal(noPong.reconnect, true)
  // The answering client goes on past several pong deadlines (2 s each).
  const pings = () => answering.seen.filter((f) => f.type === 'ping').length
  const from = pings()
  await waitFor('six more pings to the answering client', () => pings() >= from + 6)
  assert.equal(answering.seen.filter((f) => f.type === 'disconnect').length, 0, JSON.stringify(answering.seen.slice(-5)))
  assert.equal(answering.cable.state, 'connected')
})

test('history evicted while the client was away: reject_history, and the client goes on with live messages', async () => {
  const { cable: c, seen } = clusterClient(NODE_A, 'hal', { protocolOptions: { pongs: true } })
  const room = c.subscribeTo('ChatChannel', { room: 'evicted' })
  const got = []
  room.on('message', (msg) => { if (typeof msg?.n === 'number') got.push(msg.n) })
  await room.ensureSubscribed()
  clusterBroadcast('chat_evicted', 1)
  await waitFor('message 1', () => got.includes(1))

  // Away while more than history_limit (100) messages go by: offset 1 is
  // evicted, so neither the restore nor the client's request can replay.
  c.disconnect()
  await waitFor('the client to be disconnected', () => ['disconnected', 'closed'].includes(c.state))
  const missed = Array.from({ length: 150 }, (_, i) => i + 2)
  for (const n of missed) clusterBroadcast('chat_evicted', n)
  c.connect()
  await waitFor('reject_history', () => seen.find((f) => f.type === 'reject_history'))
  // The client recovers: live messages reach it again.
  await waitFor('the client to be connected', () => c.state === 'connected')
  await room.ensureSubscribed()
  clusterBroadcast('chat_evicted', 1000)
  await waitFor('a live message after the rejection', () => got.includes(1000))
  // After the restored welcome: rejected, not confirmed (the confirmation
  // before it answered the first subscribe's own history request).
  const back = seen.slice(seen.findIndex((f) => f.type === 'welcome' && f.restored))
  const control = back.filter((f) => f.type === 'reject_history' || f.type === 'confirm_history').map((f) => f.type)
  assert.deepEqual(control, ['reject_history'], JSON.stringify(control))
})
