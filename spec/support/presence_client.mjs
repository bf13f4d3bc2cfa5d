// The official @anycable/core client on actioncable-v1-ext-json, as guest
// `bob`, in the dummy app's PresenceChannel (whose `subscribed` calls
// join_presence): it waits until the presence set (the `presence` command,
// channel.presence.info()) holds `alice` and itself, with their info, then
// performs `leave` and waits for its own leave event. Prints one JSON line:
// the set it saw and the presence events it got.
// Usage: node presence_client.mjs <ws url without query> <room>
import { createRequire } from 'module'
import path from 'path'
import { fileURLToPath } from 'url'

const e2e = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../tests/e2e')
const require = createRequire(path.join(e2e, 'package.json'))
const WS = require('ws')
const { createCable } = await import(path.join(e2e, 'node_modules/@anycable/core/index.js'))

const [url, room] = process.argv.slice(2)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
async function waitFor (what, predicate) {
  const deadline = Date.now() + 30000
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

const cable = createCable(`${url}?guest=bob`, {
  websocketImplementation: WS,
  protocol: 'actioncable-v1-ext-json',
  logLevel: 'error'
})
const channel = cable.subscribeTo('PresenceChannel', { room })
const events = []
channel.on('presence', (event) => events.push(event))
await channel.ensureSubscribed()

let seen
await waitFor('alice and bob in the presence set', async () => {
  channel.presence.reset()
  // A copy: the client keeps updating its own object with the events.
  seen = { ...(await channel.presence.info()) }
  return seen['u-alice'] && seen['u-bob']
})
await channel.perform('leave')
await waitFor('its own leave', () => events.some((e) => e.type === 'leave' && e.id === 'u-bob'))
cable.disconnect()
console.log(JSON.stringify({ seen, events }))
process.exit(0)
