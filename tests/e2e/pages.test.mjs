// Pages with the real client packages in headless Chromium against the
// server tests/e2e/pages.sh starts (PAGES_TARGET): the ferrocable binary
// (--jwt_secret, --streams_secret, --streams_whisper, --turbo_streams and
// --turbo_streams_secret, and no application at all), or the embedded
// server (the dummy Rails app under Puma with `plugin :ferrocable`, the
// same options as ANYCABLE_* variables except the Turbo key, which the
// Railtie takes from the app: turbo-rails' verifier key, derived here from
// the app's secret_key_base as turbo-rails derives it). The same tests:
//   - turbo-rails' <turbo-cable-stream-source> (@hotwired/turbo-rails, i.e.
//     @hotwired/turbo with @rails/actioncable) with a Turbo-signed stream
//     name receives a broadcast and Turbo renders it;
//   - the same with @anycable/turbo-stream's element over @anycable/web;
//   - @anycable/web with a JWT (`?jid=`), a signed stream, whispers and
//     presence between two pages; an expired token (token_expired), a
//     forged one (unauthorized) and a forged stream signature are refused.
// The packages are served to the browser as they are installed (ES modules,
// an import map for the bare names). Tokens and signatures are made here
// with node:crypto, independently of the server's code.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { readFile } from 'node:fs/promises'
import { createHmac, pbkdf2Sync } from 'node:crypto'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const CABLE_PORT = Number(process.env.CABLE_PORT)
const PAGES_PORT = Number(process.env.PAGES_PORT)
const { PAGES_TARGET, PAGES_JWT_SECRET, PAGES_STREAMS_SECRET, PAGES_BROADCAST_KEY, PAGES_SECRET_KEY_BASE } = process.env
if (!CABLE_PORT || !PAGES_PORT || !PAGES_JWT_SECRET) throw new Error('run through tests/e2e/pages.sh')
// The binary is given the Turbo key; the embedded server takes turbo-rails'
// from the app: Rails.application.key_generator (PBKDF2-HMAC-SHA1, 1000
// iterations, Rails 6.1's defaults) of "turbo/signed_stream_verifier_key",
// 64 bytes (turbo-rails lib/turbo/engine.rb).
const PAGES_TURBO_KEY = PAGES_TARGET === 'embedded'
  ? pbkdf2Sync(PAGES_SECRET_KEY_BASE, 'turbo/signed_stream_verifier_key', 1000, 64, 'sha1')
  : process.env.PAGES_TURBO_KEY
const HERE = path.dirname(fileURLToPath(import.meta.url))
const CABLE = `ws://127.0.0.1:${CABLE_PORT}/cable`
const WAIT = 30000

const b64url = (s) => Buffer.from(s).toString('base64url')
// `current_user`: the dummy app's identifier (identified_by :current_user).
function jwt (ext, expIn = 600) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))
  const payload = b64url(JSON.stringify({ ext: JSON.stringify(ext), exp: Math.floor(Date.now() / 1000) + expIn }))
  const sig = createHmac('sha256', PAGES_JWT_SECRET).update(`${header}.${payload}`).digest('base64url')
  return `${header}.${payload}.${sig}`
}
// Rails' MessageVerifier (JSON serializer, SHA256), as turbo-rails signs
// with its verifier key and Ferrocable.signed_stream_name with the secret.
function signed (name, key) {
  const data = Buffer.from(JSON.stringify(name)).toString('base64')
  return `${data}--${createHmac('sha256', key).update(data).digest('hex')}`
}
async function broadcast (stream, data) {
  const res = await fetch(`http://127.0.0.1:${CABLE_PORT}/_broadcast`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${PAGES_BROADCAST_KEY}` },
    body: JSON.stringify({ stream, data: JSON.stringify(data) })
  })
  await res.text()
  assert.equal(res.status, 201)
}

const importMap = JSON.stringify({
  imports: {
    '@anycable/web': '/m/@anycable/web/index.js',
    '@anycable/core': '/m/@anycable/core/index.js',
    '@anycable/turbo-stream': '/m/@anycable/turbo-stream/index.js',
    '@hotwired/turbo': '/m/@hotwired/turbo/dist/turbo.es2017-esm.js',
    nanoevents: '/m/nanoevents/index.js'
  }
})
const page = (head, body, script) => `<!doctype html><html><head><meta charset="utf-8">${head}
<script type="importmap">${importMap}</script></head><body>${body}
<div id="messages"></div><script type="module">${script}</script></body></html>`

const pages = {
  // turbo-rails' own bundle (@hotwired/turbo and @rails/actioncable inside);
  // the consumer's URL comes from the action-cable-url meta tag, as in Rails.
  '/turbo-rails': () => page(
    `<meta name="action-cable-url" content="${CABLE}?jid=${jwt({ current_user: 'tr' })}">`,
    `<turbo-cable-stream-source channel="Turbo::StreamsChannel" signed-stream-name="${signed('board:1', PAGES_TURBO_KEY)}"></turbo-cable-stream-source>`,
    'import "/m/@hotwired/turbo-rails/app/assets/javascripts/turbo.js"'
  ),
  '/anycable-turbo': () => page(
    '',
    `<turbo-cable-stream-source channel="Turbo::StreamsChannel" signed-stream-name="${signed('board:2', PAGES_TURBO_KEY)}"></turbo-cable-stream-source>`,
    `import "@hotwired/turbo"
     import { createCable } from "@anycable/web"
     import { start } from "@anycable/turbo-stream"
     start(createCable(${JSON.stringify(`${CABLE}?jid=${jwt({ current_user: 'at' })}`)}, { logLevel: "error" }))`
  ),
  // @anycable/web: JWT, a signed stream, whispers and presence.
  '/anycable-web': (q) => page(
    '',
    '<p id="state">connecting</p>',
    `import { createCable } from "@anycable/web"
     const name = ${JSON.stringify(q.get('name'))}
     const cable = createCable(${JSON.stringify(`${CABLE}?jid=${jwt({ current_user: q.get('name') })}`)},
       { protocol: "actioncable-v1-ext-json", logLevel: "error" })
     const channel = cable.streamFromSigned(${JSON.stringify(signed('room:1', PAGES_STREAMS_SECRET))})
     window.received = []; window.presenceEvents = []
     channel.on("message", (m) => window.received.push(m))
     channel.on("presence", (e) => window.presenceEvents.push(e))
     window.channel = channel
     window.forged = () => cable.streamFromSigned(${JSON.stringify(signed('room:1', 'not-the-key'))}).ensureSubscribed()
       .then(() => "subscribed", (e) => "refused")
     await channel.ensureSubscribed()
     document.getElementById("state").textContent = "subscribed"`
  ),
  // @anycable/web with a bad token: the reason it was closed with.
  '/anycable-bad-token': (q) => page(
    '',
    '<p id="state">connecting</p>',
    `import { createCable } from "@anycable/web"
     const cable = createCable(${JSON.stringify(CABLE)} + "?jid=" + ${JSON.stringify(q.get('token'))}, { logLevel: "error" })
     window.closes = []; window.cable = cable
     cable.on("close", (e) => window.closes.push(e?.reason))
     cable.connect().catch(() => {})`
  )
}

let server, browser
before(async () => {
  server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x')
    try {
      if (url.pathname.startsWith('/m/')) {
        const file = path.join(HERE, 'node_modules', path.normalize(url.pathname.slice(3)))
        if (!file.startsWith(path.join(HERE, 'node_modules'))) throw new Error('outside')
        res.writeHead(200, { 'Content-Type': 'text/javascript' })
        res.end(await readFile(file))
      } else if (url.pathname === '/favicon.ico') {
        res.writeHead(204).end()
      } else if (pages[url.pathname]) {
        res.writeHead(200, { 'Content-Type': 'text/html' })
        res.end(pages[url.pathname](url.searchParams))
      } else {
        res.writeHead(404).end()
      }
    } catch {
      res.writeHead(404).end()
    }
  })
  await new Promise((resolve) => server.listen(PAGES_PORT, '127.0.0.1', resolve))
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
})
after(async () => {
  await browser?.close()
  server?.close()
})

async function open (pathAndQuery) {
  const context = await browser.newContext()
  const p = await context.newPage()
  const errors = []
  p.on('pageerror', (e) => errors.push(String(e)))
  p.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()) })
  await p.goto(`http://127.0.0.1:${PAGES_PORT}${pathAndQuery}`)
  p.errors = errors
  return p
}

async function turboPage (pathname, stream) {
  const p = await open(pathname)
  await p.waitForSelector('turbo-cable-stream-source[connected]', { state: 'attached', timeout: WAIT })
  const html = `<turbo-stream action="append" target="messages"><template><p class="msg">hello ${stream}</p></template></turbo-stream>`
  await broadcast(stream, html)
  await p.waitForSelector(`#messages p.msg:text("hello ${stream}")`, { timeout: WAIT })
  assert.deepEqual(p.errors, [])
  await p.context().close()
}

test('@hotwired/turbo-rails (@hotwired/turbo + @rails/actioncable): a Turbo-signed stream receives a broadcast', async () => {
  await turboPage('/turbo-rails', 'board:1')
})

test('@anycable/turbo-stream with @anycable/web: a Turbo-signed stream receives a broadcast', async () => {
  await turboPage('/anycable-turbo', 'board:2')
})

test('@anycable/web: JWT, a signed stream, whispers and presence between two pages', async () => {
  const alice = await open('/anycable-web?name=alice')
  const bob = await open('/anycable-web?name=bob')
  for (const p of [alice, bob]) await p.waitForSelector('#state:text("subscribed")', { timeout: WAIT })

  // A broadcast on the signed stream reaches both.
  await broadcast('room:1', { text: 'hi all' })
  for (const p of [alice, bob]) {
    await p.waitForFunction(() => window.received.some((m) => m.text === 'hi all'), null, { timeout: WAIT })
  }

  // A whisper reaches the other page, never its sender.
  await alice.evaluate(() => window.channel.whisper({ typing: 'alice' }))
  await bob.waitForFunction(() => window.received.some((m) => m.typing === 'alice'), null, { timeout: WAIT })

  // Presence: Alice joins, Bob sees the join and the record; Alice leaves.
  await alice.evaluate(() => window.channel.presence.join('u-alice', { name: 'Alice' }))
  await bob.waitForFunction(() => window.presenceEvents.some((e) => e.type === 'join' && e.id === 'u-alice'),
    null, { timeout: WAIT })
  const records = await bob.evaluate(() => window.channel.presence.info())
  assert.deepEqual(records, { 'u-alice': { name: 'Alice' } })
  await alice.evaluate(() => window.channel.presence.leave())
  await bob.waitForFunction(() => window.presenceEvents.some((e) => e.type === 'leave' && e.id === 'u-alice'),
    null, { timeout: WAIT })

  // A forged stream signature is refused.
  assert.equal(await alice.evaluate(() => window.forged()), 'refused')

  // The sender never got its own whisper (checked last: by now it would have).
  assert.equal(await alice.evaluate(() => window.received.some((m) => m.typing === 'alice')), false)
  // (@anycable/web logs the forged subscription's rejection as an error.)
  assert.deepEqual(alice.errors.filter((e) => !e.includes('SubscriptionRejectedError')), [])
  assert.deepEqual(bob.errors, [])
  for (const p of [alice, bob]) await p.context().close()
})

test('@anycable/web: an expired token is token_expired, a forged one unauthorized, and neither reconnects', async () => {
  for (const [token, reason] of [[jwt({ current_user: 'x' }, -30), 'token_expired'],
    [`${jwt({ current_user: 'x' })}x`, 'unauthorized']]) {
    const p = await open(`/anycable-bad-token?token=${encodeURIComponent(token)}`)
    await p.waitForFunction(() => window.closes.length > 0, null, { timeout: WAIT })
    assert.deepEqual(await p.evaluate(() => window.closes), [reason])
    // No reconnect: the cable stays closed (a reconnect would close again).
    await p.waitForTimeout(1000)
    assert.equal(await p.evaluate(() => window.cable.state), 'closed')
    assert.deepEqual(await p.evaluate(() => window.closes), [reason])
    await p.context().close()
  }
})
