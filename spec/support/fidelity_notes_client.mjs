// The official @rails/actioncable client (npm, over the `ws` package) as a
// signed-in browser tab of the fidelity app: the Devise session cookie and an
// allowed Origin on the handshake, subscribed to NotesChannel. Driven over
// JSON lines, so the spec decides when each user adds a note:
//   stdin:  {"add":"<text>"}   NotesChannel#add
//   stdout: {"event":"connected"|"received"|"rejected"|"disconnected","data":...}
// It disconnects and exits when stdin closes.
// Usage: node fidelity_notes_client.mjs <ws url> <origin> [<cookie header>]
import readline from 'readline'
import { WS, actionCableConsumer } from './clients.mjs'

const [url, origin, cookie] = process.argv.slice(2)

// A browser sends its cookies and its page's origin with the upgrade request.
const createConsumer = await actionCableConsumer(class extends WS {
  constructor (address, protocols) {
    const headers = { 'User-Agent': 'FidelitySpec/1.0 (@rails/actioncable)' }
    if (cookie) headers.Cookie = cookie
    super(address, protocols, { origin, headers })
  }
})

const say = (event, data) => console.log(JSON.stringify({ event, data }))
const consumer = createConsumer(url)
const notes = consumer.subscriptions.create({ channel: 'NotesChannel' }, {
  connected () { say('connected') },
  rejected () { say('rejected') },
  disconnected (details) { say('disconnected', details) },
  received (data) { say('received', data) }
})

const input = readline.createInterface({ input: process.stdin })
input.on('line', (line) => {
  const command = JSON.parse(line)
  if (command.add !== undefined) notes.perform('add', { text: command.add })
})
input.on('close', () => {
  consumer.disconnect()
  setTimeout(() => process.exit(0), 100)
})
