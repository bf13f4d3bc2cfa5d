// The official @anycable/core client on actioncable-v1-ext-json against a
// Ferrocable server running the dummy app: it leaves, another client speaks
// meanwhile (ChatChannel#speak broadcasts), it comes back and must get what
// it missed. Prints one JSON line: the chat messages it got, with offsets.
// Usage: node reliable_client.mjs <ws url without query> <room>
import { createRequire } from 'module'
import path from 'path'
import { fileURLToPath } from 'url'

const e2e = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../tests/e2e')
const require = createRequire(path.join(e2e, 'package.json'))
const WS = require('ws')
const { createCable } = await import(path.join(e2e, 'node_modules/@anycable/core/index.js'))

const [url, room] = process.argv.slice(2)
const frames = []
class RecordingWS extends WS {
  constructor (...args) {
    super(...args)
    this.addEventListener('message', (event) => frames.push(JSON.parse(event.data)))
  }
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
async function waitFor (what, predicate) {
  const deadline = Date.now() + 30000
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}
const texts = () => frames.filter((f) => f.message?.text).map((f) => f.message.text)
const cable = (guest, ws = WS) => createCable(`${url}?guest=${guest}`, {
  websocketImplementation: ws,
  protocol: 'actioncable-v1-ext-json',
  logLevel: 'error'
})

const away = cable('away', RecordingWS)
const awayRoom = away.subscribeTo('ChatChannel', { room })
await awayRoom.ensureSubscribed()
const speaker = cable('speaker')
const speakerRoom = speaker.subscribeTo('ChatChannel', { room })
await speakerRoom.ensureSubscribed()

await speakerRoom.perform('speak', { text: 'm1' })
await waitFor('m1', () => texts().includes('m1'))
away.disconnect()
await waitFor('the client to be away', () => ['disconnected', 'closed'].includes(away.state))
for (const text of ['m2', 'm3', 'm4']) await speakerRoom.perform('speak', { text })
await sleep(200)
away.connect()
await waitFor('the missed messages', () => texts().includes('m4'))
await speakerRoom.perform('speak', { text: 'm5' })
await waitFor('m5', () => texts().includes('m5'))
await sleep(300) // room for a duplicate to show up
const got = frames.filter((f) => f.message?.text).map((f) => ({ text: f.message.text, offset: f.offset, stream: f.stream_id }))
console.log(JSON.stringify({ got, confirmed: frames.some((f) => f.type === 'confirm_history') }))
away.disconnect()
speaker.disconnect()
setTimeout(() => process.exit(0), 100)
