// The official @rails/actioncable client (from npm, over the `ws` package)
// against a Ferrocable server: prints what the client saw as JSON lines.
// Usage: node actioncable_client.mjs <ws url> <room>
import { actionCableConsumer } from './clients.mjs'

const createConsumer = await actionCableConsumer()

const [url, room] = process.argv.slice(2)
const say = (event, data) => console.log(JSON.stringify({ event, data }))
const consumer = createConsumer(url)
const done = (code) => { consumer.disconnect(); setTimeout(() => process.exit(code), 100) }

consumer.subscriptions.create({ channel: 'ChatChannel', room: 'secret' }, {
  rejected () { say('rejected', 'secret') }
})
consumer.subscriptions.create({ channel: 'ChatChannel', room }, {
  connected () {
    say('connected')
    this.perform('speak', { text: 'from @rails/actioncable' })
  },
  received (data) {
    say('received', data)
    if (data.text) done(0)
  }
})
setTimeout(() => { say('timeout'); done(2) }, 10000)
