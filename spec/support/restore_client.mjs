// The official @anycable/core client on actioncable-v1-ext-json, restored
// by a Ferrocable server running the dummy app: it joins a ChatChannel room
// and speaks, then its socket goes (`drop`: it closes it and reconnects;
// `restart`: the spec restarts the server, the client reconnects by itself)
// and it must come back restored (its sid), speak again and read the
// channel's `history` (instance variables set in `subscribed` and `speak`).
// Steps through stdout lines (`READY`, then one JSON line) and stdin (one
// line once the server is back, in `restart` mode). Ends with `kick` (the
// application closes the connection: its final close).
// Usage: node restore_client.mjs <ws url without query> <room> <drop|restart> <guest>
import { createRequire } from 'module'
import path from 'path'
import readline from 'readline'
import { fileURLToPath } from 'url'

const e2e = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../tests/e2e')
const require = createRequire(path.join(e2e, 'package.json'))
const WS = require('ws')
const { createCable } = await import(path.join(e2e, 'node_modules/@anycable/core/index.js'))

const [url, room, mode, guest] = process.argv.slice(2)
const frames = []
class RecordingWS extends WS {
  constructor (...args) {
    super(...args)
    this.addEventListener('message', (event) => frames.push(JSON.parse(event.data)))
  }
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
async function waitFor (what, predicate, ms = 60000) {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(frames)}`)
    await sleep(20)
  }
}
const texts = () => frames.filter((f) => f.message?.text).map((f) => f.message.text)
const welcomes = () => frames.filter((f) => f.type === 'welcome')
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]()

const cable = createCable(`${url}?guest=${guest}`, {
  websocketImplementation: RecordingWS,
  protocol: 'actioncable-v1-ext-json',
  logLevel: 'error',
  // Back quickly once the server is (a restart takes seconds).
  reconnectStrategy: () => 100
})
const channel = cable.subscribeTo('ChatChannel', { room })
await channel.ensureSubscribed()
await channel.perform('speak', { text: 'before' })
await waitFor('before', () => texts().includes('before'))

if (mode === 'drop') {
  cable.disconnect()
  await waitFor('the client to be away', () => ['disconnected', 'closed'].includes(cable.state))
  cable.connect()
} else {
  console.log('READY')
  await lines.next() // the server has been restarted
}
await waitFor('a second welcome', () => welcomes().length >= 2)
await waitFor('connected again', () => cable.state === 'connected')
await channel.perform('speak', { text: 'after' })
await waitFor('after', () => texts().includes('after'))
await channel.perform('history')
await waitFor('the history', () => frames.some((f) => f.message?.said))
const history = frames.find((f) => f.message?.said).message
console.log(JSON.stringify({ welcomes: welcomes(), history, texts: texts() }))
await channel.perform('kick')
await waitFor('the kick', () => frames.some((f) => f.type === 'disconnect'))
cable.disconnect()
setTimeout(() => process.exit(0), 100)
