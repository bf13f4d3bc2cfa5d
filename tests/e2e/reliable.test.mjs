// End-to-end: the official @anycable/core client on actioncable-v1-ext-json
// against the ferrocable binary (Redis pub/sub broadcasts, so the memory broker) while
// messages are broadcast when it is away: after it comes back, every message
// has arrived, in order, once, with its stream position. run.sh runs it
// after clients.test.mjs, with the same environment (E2E_CABLE_PORT,
// E2E_BROADCAST_KEY).

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import WS from 'ws'
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
