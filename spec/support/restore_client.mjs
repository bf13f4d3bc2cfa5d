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
import readline from 'readline'
import { anycableCore, recording, texts as textsOf, waitFor as waitUntil } from './clients.mjs'

const { createCable } = await anycableCore()

const [url, room, mode, guest] = process.argv.slice(2)
const frames = []
const RecordingWS = recording(frames)
const waitFor = (what, predicate) => waitUntil(what, predicate, { ms: 60000, detail: () => `: ${JSON.stringify(frames)}` })
const texts = () => textsOf(frames)
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
