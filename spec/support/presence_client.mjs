// The official @anycable/core client on actioncable-v1-ext-json, as guest
// `bob`, in the dummy app's PresenceChannel (whose `subscribed` calls
// join_presence): it waits until the presence set (the `presence` command,
// channel.presence.info()) holds `alice` and itself, with their info, then
// performs `leave` and waits for its own leave event. Prints one JSON line:
// the set it saw and the presence events it got.
// Usage: node presence_client.mjs <ws url without query> <room>
import { WS, anycableCore, waitFor as waitUntil } from './clients.mjs'

const { createCable } = await anycableCore()

const [url, room] = process.argv.slice(2)
const waitFor = (what, predicate) => waitUntil(what, predicate, { every: 50 })

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
