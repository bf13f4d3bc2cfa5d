// The official @anycable/core client on actioncable-v1-ext-json against a
// Ferrocable server running the dummy app: it leaves, another client speaks
// meanwhile (ChatChannel#speak broadcasts), it comes back and must get what
// it missed. Prints one JSON line: the chat messages it got, with offsets.
// Usage: node reliable_client.mjs <ws url without query> <room>
import { WS, anycableCore, recording, sleep, texts as textsOf, waitFor } from './clients.mjs'

const { createCable } = await anycableCore()

const [url, room] = process.argv.slice(2)
const frames = []
const RecordingWS = recording(frames)
const texts = () => textsOf(frames)
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
