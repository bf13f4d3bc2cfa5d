// Deploy restart of the embedded server (spec/dummy, `rake ferrocable:server`,
// broker=redis) under N official @anycable/core clients on
// actioncable-v1-ext-json while broadcasts go on at a steady rate: the server
// process is stopped (SIGTERM) and a new one started on the same port.
// Reports messages lost and duplicated per client, the time until every
// client is restored (from the SIGTERM), and the application calls the new
// process made (connect / subscribed, from the dummy app's event log).
//
// A broadcast counts as sent once a server accepted it (HTTP broadcast, 2xx);
// while no server listens the publisher retries it, as an app's broadcaster
// would. Every process started here is stopped by its PID. Progress goes to
// stderr, the result (one JSON line) to stdout; the run gives up by itself
// after RESTART_DEADLINE seconds (default 900), printing what it has.
//
// Usage: node bench/restart/restart.mjs [clients=200] [rate/s=20] [seconds before/after=5]
// (bench/compare runs it with 5000 clients at 5/s.)
import { spawn } from 'child_process'
import { createRequire } from 'module'
import fs from 'fs'
import net from 'net'
import os from 'os'
import path from 'path'
import { fileURLToPath } from 'url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const e2e = path.join(root, 'tests/e2e')
const require = createRequire(path.join(e2e, 'package.json'))
const WS = require('ws')
const { createCable } = await import(path.join(e2e, 'node_modules/@anycable/core/index.js'))

const [clients = 200, rate = 20, phase = 5] = process.argv.slice(2).map(Number)
const t0 = Date.now()
const progress = (what) => process.stderr.write(`restart: ${((Date.now() - t0) / 1000).toFixed(1)}s ${what}\n`)
const deadline = Number(process.env.RESTART_DEADLINE || 900)
setTimeout(() => {
  progress(`gave up after ${deadline} s`)
  console.log(JSON.stringify({ clients, rate, error: `did not finish within ${deadline} s` }))
  process.exit(2)
}, deadline * 1000).unref()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
async function waitFor (what, predicate, ms = 120000) {
  const deadline = Date.now() + ms
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}
const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)) })
})

const children = []
function start (cmd, args, env = {}) {
  const child = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  child.output = ''
  child.stdout.on('data', (d) => { child.output += d })
  child.stderr.on('data', (d) => { child.output += d })
  child.exited = new Promise((resolve) => child.on('exit', resolve))
  children.push(child)
  return child
}
process.on('exit', () => children.forEach((c) => { try { process.kill(c.pid, 'SIGKILL') } catch {} }))

const redisPort = await freePort()
start('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'])
const port = await freePort()
const httpPort = await freePort()
const events = path.join(os.tmpdir(), `ferrocable-restart-bench-${process.pid}`)
const env = {
  RAILS_ENV: 'test',
  RUBYLIB: path.join(root, 'lib'),
  ANYCABLE_PORT: String(port),
  ANYCABLE_BROKER: 'redis',
  // 20/s for a restart of ~10 s (client backoff included) is more than the
  // default 100: evicted history is lost history (reject_history).
  ANYCABLE_HISTORY_LIMIT: process.env.ANYCABLE_HISTORY_LIMIT || '1000',
  ANYCABLE_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
  ANYCABLE_BROADCAST_ADAPTER: 'http',
  ANYCABLE_HTTP_BROADCAST_PORT: String(httpPort),
  DUMMY_EVENTS: events,
  DUMMY_LOG: '/dev/null'
}
const server = () => start('rake', ['-f', path.join(root, 'spec/dummy/Rakefile'), 'ferrocable:server'], env)
const listening = (child) => waitFor('the server', () => /ferrocable::server: listening/.test(child.output) || (child.exitCode !== null && Promise.reject(new Error(child.output))))

let first = server()
await listening(first)

// Clients: each records the texts it got and its welcomes; subscribed 50
// at a time (each subscribe is a Ruby `subscribed`).
const received = []
const history = []
const restoredAt = []
const cables = []
const subscribing = []
progress(`server up; subscribing ${clients} clients`)
for (let i = 0; i < clients; i++) {
  const got = []
  received.push(got)
  let welcomes = 0
  class Recording extends WS {
    constructor (...args) {
      super(...args)
      this.addEventListener('message', (event) => {
        const f = JSON.parse(event.data)
        if (f.type === 'welcome' && ++welcomes > 1 && f.restored) restoredAt[i] = Date.now()
        if (f.message?.text) got.push(f.message.text)
        if (f.type === 'reject_history' || f.type === 'confirm_history') history[i] = f.type
      })
    }
  }
  const cable = createCable(`ws://127.0.0.1:${port}/cable?guest=c${i}`, {
    websocketImplementation: Recording, protocol: 'actioncable-v1-ext-json', logLevel: 'error'
  })
  cables.push(cable)
  subscribing.push(cable.subscribeTo('ChatChannel', { room: 'bench' }).ensureSubscribed())
  if (subscribing.length === 50) {
    await Promise.all(subscribing.splice(0))
    if ((i + 1) % 500 === 0) progress(`${i + 1} subscribed`)
  }
}
await Promise.all(subscribing)
progress(`${clients} subscribed; broadcasting ${rate}/s`)
const eventsBefore = fs.existsSync(events) ? fs.readFileSync(events, 'utf8').trim().split('\n').length : 0

// The publisher: one broadcast every 1/rate s, retried until accepted.
const sent = []
let publishing = true
const publisher = (async () => {
  let n = 0
  while (publishing) {
    const text = `m${++n}`
    const body = JSON.stringify({ stream: 'chat_bench', data: JSON.stringify({ text }) })
    for (;;) {
      try {
        const res = await fetch(`http://127.0.0.1:${httpPort}/_broadcast`, { method: 'POST', body })
        if (res.ok) break
      } catch {}
      await sleep(20)
    }
    sent.push(text)
    await sleep(1000 / rate)
  }
})()

await sleep(phase * 1000)
const termAt = Date.now()
progress('SIGTERM to the server')
process.kill(first.pid, 'SIGTERM')
await first.exited
const downFor = Date.now() - termAt
progress(`old server exited (${first.exitCode}); starting the new one`)
const second = server()
await listening(second)
const upAt = Date.now()
progress('new server listening')
const ticker = setInterval(() => progress(`${restoredAt.filter(Boolean).length} restored, ${sent.length} sent`), 2000)
await waitFor('every client restored or reconnected', () => cables.every((c, i) => restoredAt[i] || c.state === 'connected'), 600000)
clearInterval(ticker)
progress('every client back')
const restoredIn = Math.max(...restoredAt.filter(Boolean)) - termAt
await sleep(phase * 1000)
publishing = false
await publisher
progress(`${sent.length} sent; waiting for the last one everywhere`)
await waitFor('the last broadcast everywhere', () => received.every((got) => got.includes(sent[sent.length - 1])), 60000).catch(() => {})
await sleep(500)

let lost = 0; let duplicated = 0
const lostExamples = []
for (const [i, got] of received.entries()) {
  const seen = new Set(got)
  const missing = sent.filter((t) => !seen.has(t))
  lost += missing.length
  if (missing.length && lostExamples.length < 3) lostExamples.push({ client: i, history: history[i], missing: missing.slice(0, 20) })
  duplicated += got.length - seen.size
}
const lines = fs.readFileSync(events, 'utf8').trim().split('\n').slice(eventsBefore).map((l) => JSON.parse(l))
const count = (kind) => lines.filter((e) => e[0] === kind).length
console.log(JSON.stringify({
  clients,
  rate,
  sent: sent.length,
  expected_deliveries: sent.length * clients,
  lost,
  duplicated,
  restored: restoredAt.filter(Boolean).length,
  server_down_ms: downFor,
  new_server_listening_after_ms: upAt - termAt,
  all_restored_after_ms: restoredIn,
  history: { confirmed: history.filter((h) => h === 'confirm_history').length, rejected: history.filter((h) => h === 'reject_history').length },
  lost_examples: lostExamples,
  app_calls_during_restore: { connect: count('connect'), subscribed: count('subscribed'), disconnect: count('disconnect') }
}))
cables.forEach((c) => c.disconnect())
process.kill(second.pid, 'SIGTERM')
await second.exited
fs.rmSync(events, { force: true })
process.exit(0)
