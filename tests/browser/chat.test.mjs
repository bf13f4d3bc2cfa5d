// The chat demo in a real browser: Debian's Chromium, headless, driven by
// playwright-core. Two users log in, join a room, chat, see each other in the
// "who is here" list; a reload keeps the history; a broadcast from outside
// (HTTP) shows up. A screenshot goes to tmp/screenshots/ (git-ignored).
//
// Needs the demo running: BASE_URL (pages) and CABLE_URL (Ferrocable's HTTP
// side). tests/browser/run.sh starts both and runs this.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const BASE = process.env.BASE_URL
const CABLE = process.env.CABLE_URL
const SHOTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../tmp/screenshots')
const room = `room${Date.now() % 100000}`

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

async function eventually (what, fn, timeout = 10000) {
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
    const bob = await login(browser, 'bob')

    await eventually('both in the presence list on both pages', async () => {
      const a = await present(alice)
      const b = await present(bob)
      return (a.join() === 'alice,bob' && b.join() === 'alice,bob') || { a, b }
    })

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

    const published = await fetch(`${CABLE}/_broadcast`, {
      method: 'POST',
      body: JSON.stringify({
        stream: `chat:${room}`,
        data: JSON.stringify({ type: 'message', user: 'curl', body: 'hello from outside' })
      })
    })
    assert.equal(published.status, 201)
    await eventually('a broadcast from outside shows up', async () =>
      (await messages(alice)).includes('curl: hello from outside') || await messages(alice))

    mkdirSync(SHOTS, { recursive: true })
    await bob.screenshot({ path: path.join(SHOTS, 'chat.png'), fullPage: true })

    await alice.context().close()
    await eventually('alice leaves the presence list', async () => (await present(bob)).join() === 'bob' || await present(bob))
  } finally {
    await browser.close()
  }
})
