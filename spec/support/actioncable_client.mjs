// The official @rails/actioncable client (from npm, over the `ws` package)
// against a Ferrocable server: prints what the client saw as JSON lines.
// Usage: node actioncable_client.mjs <ws url> <room>
import { createRequire } from 'module'
import path from 'path'
import { fileURLToPath } from 'url'

const e2e = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../tests/e2e')
const require = createRequire(path.join(e2e, 'package.json'))
globalThis.WebSocket = require('ws')
// The client watches page visibility; Node has no document or global listeners.
globalThis.addEventListener ??= () => {}
globalThis.removeEventListener ??= () => {}
globalThis.document ??= { visibilityState: 'visible', addEventListener () {}, removeEventListener () {} }
const { createConsumer } = await import(
  path.join(e2e, 'node_modules/@rails/actioncable/app/assets/javascripts/actioncable.esm.js'))

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
