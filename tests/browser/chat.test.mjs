// The chat demo in a real browser: Debian's Chromium, headless, driven by
// playwright-core. Two users log in, join a room, see each other in the
// "who is here" list (the server's presence set), see the other typing (a
// whisper), chat; a reload keeps the history; a broadcast from outside
// (HTTP) shows up; a closed page leaves the list. A screenshot goes to
// tmp/screenshots/ (git-ignored).
//
// Needs the demo running: BASE_URL (pages) and CABLE_URL (Ferrocable's HTTP
// side). tests/browser/run.sh starts both and runs this; with CLUSTER=1 the
// demo is a two-worker Puma cluster (Redis) and the two users' sockets are
// on different workers.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync } from 'node:fs'
import { execSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const BASE = process.env.BASE_URL
const CABLE = process.env.CABLE_URL
const SHOTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../tmp/screenshots')
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
// The demo's room, where the README's broadcast commands send to.
const room = 'lobby'

// The README's commands for broadcasting from outside, run as written (only
// the ports differ: the test's demo does not use 8080 and 8090).
function readmeCommand (prefix) {
  const line = readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n').find((l) => l.startsWith(prefix))
  assert.ok(line, `README.md has a command starting with ${prefix}`)
  return line
    .replace('localhost:8080', new URL(CABLE).host)
    .replace('localhost:8090', `127.0.0.1:${process.env.BROADCAST_PORT}`)
}

async function login (browser, name) {
  const context = await browser.newContext()
  const page = await context.newPage()
  page.on('pageerror', (e) => console.error(`[${name}] page error:`, e))
  await page.goto(`${BASE}/`)
  await page.fill('#name', name)
  await page.click('#login')
  await page.waitForURL(/\/rooms\/lobby$/)
  await page.goto(`${BASE}/rooms/${room}`)
  await page.waitForSelector('#status:text("connected")', { timeout: 10000 })
  return page
}

async function say (page, text) {
  await page.fill('#body', text)
  await page.press('#body', 'Enter')
}

const messages = (page) => page.$$eval('#messages .message', (lis) =>
  lis.map((li) => `${li.querySelector('.user').textContent}: ${li.querySelector('.body').textContent}`))
const present = (page) => page.$$eval('#presence li', (lis) => lis.map((li) => li.textContent))
const typing = (page) => page.textContent('#typing')
const worker = (page) => page.textContent('#worker')

async function eventually (what, fn, timeout = 30000) {
  const deadline = Date.now() + timeout
  let last
  while (Date.now() < deadline) {
    last = await fn()
    if (last === true) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  assert.fail(`${what} (last seen: ${JSON.stringify(last)})`)
}

test('two users chat in a room through Ferrocable', { timeout: 120000 }, async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
  try {
    const alice = await login(browser, 'alice')
    await eventually('alice knows her worker', async () => (await worker(alice)) !== '' || 'none')
    const bob = await login(browser, 'bob')
    if (process.env.CLUSTER) {
      // Reconnect bob until the kernel gives his socket to the other worker.
      for (let attempt = 0; ; attempt++) {
        await eventually('bob knows his worker', async () => (await worker(bob)) !== '' || 'none')
        if ((await worker(bob)) !== (await worker(alice))) break
        assert.ok(attempt < 40, `bob's socket never reached the other worker (${await worker(alice)})`)
        await bob.reload()
        await bob.waitForSelector('#status:text("connected")')
      }
      console.log(`alice on ${await worker(alice)}, bob on ${await worker(bob)}`)
    }

    await eventually('both in the presence list on both pages', async () => {
      const a = await present(alice)
      const b = await present(bob)
      return (a.join() === 'alice,bob' && b.join() === 'alice,bob') || { a, b }
    })

    // Typing whispers to the others; the message ends it.
    await alice.fill('#body', 'hello')
    await eventually('bob sees alice typing', async () => (await typing(bob)) === 'alice is typing…' || await typing(bob))
    assert.equal(await typing(alice), '', 'nobody else types')
    await alice.fill('#body', '')

    await say(alice, 'hello bob')
    await eventually('bob sees alice', async () => (await messages(bob)).includes('alice: hello bob') || await messages(bob))
    await say(bob, 'hi alice')
    await eventually('alice sees bob', async () => (await messages(alice)).includes('bob: hi alice') || await messages(alice))

    await bob.reload()
    await bob.waitForSelector('#status:text("connected")')
    await eventually('history survives a reload', async () => {
      const seen = await messages(bob)
      return (seen.join('|') === 'alice: hello bob|bob: hi alice') || seen
    })

    // The README's commands target the one-process demo (its HTTP broadcast port).
    if (!process.env.CLUSTER) {
      execSync(readmeCommand('curl -X POST'), { cwd: ROOT, stdio: 'inherit' })
      await eventually('the README\'s curl broadcast shows up', async () =>
        (await messages(alice)).includes('curl: hello from curl') || await messages(alice))
      execSync(readmeCommand('examples/chat/bin/rails runner'), {
        cwd: ROOT, stdio: 'inherit', env: { ...process.env, CABLE_PORT: new URL(CABLE).port }
      })
      await eventually('the README\'s rails runner broadcast shows up', async () =>
        (await messages(bob)).includes('runner: hi') || await messages(bob))
    }

    mkdirSync(SHOTS, { recursive: true })
    await bob.screenshot({ path: path.join(SHOTS, process.env.CLUSTER ? 'chat-cluster.png' : 'chat.png'), fullPage: true })

    await alice.context().close()
    // After presence_ttl (5 s in the demo).
    await eventually('alice leaves the presence list', async () => (await present(bob)).join() === 'bob' || await present(bob))
  } finally {
    await browser.close()
  }
})
