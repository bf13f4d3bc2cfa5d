// What the spec's Node clients share: the packages installed for the
// end-to-end tests (tests/e2e/node_modules: `ws`, @anycable/core), a `ws`
// socket class that records every frame it receives, and waiting for a
// condition with a bound (never a fixed sleep).
import { createRequire } from 'module'
import path from 'path'
import { fileURLToPath } from 'url'

const e2e = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../tests/e2e')
const require = createRequire(path.join(e2e, 'package.json'))

export const WS = require('ws')
export const anycableCore = () => import(path.join(e2e, 'node_modules/@anycable/core/index.js'))

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// Resolves once `predicate()` (which may be async) holds; throws after `ms`,
// with `detail()` in the message.
export async function waitFor (what, predicate, { ms = 30000, every = 20, detail = () => '' } = {}) {
  const deadline = Date.now() + ms
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${detail()}`)
    await sleep(every)
  }
}

// A `ws` socket class whose received frames (parsed) land in `frames`.
export function recording (frames) {
  return class RecordingWS extends WS {
    constructor (...args) {
      super(...args)
      this.addEventListener('message', (event) => frames.push(JSON.parse(event.data)))
    }
  }
}

// The chat texts among recorded frames.
export const texts = (frames) => frames.filter((f) => f.message?.text).map((f) => f.message.text)

// @rails/actioncable's `createConsumer`, made to run in Node: the client
// looks up `WebSocket` globally and watches page visibility, which Node has
// no document or global listeners for. `Socket` is the class to use
// (a browser's cookies and origin can be given by a subclass).
export async function actionCableConsumer (Socket = WS) {
  globalThis.WebSocket = Socket
  globalThis.addEventListener ??= () => {}
  globalThis.removeEventListener ??= () => {}
  globalThis.document ??= { visibilityState: 'visible', addEventListener () {}, removeEventListener () {} }
  const { createConsumer } = await import(
    path.join(e2e, 'node_modules/@rails/actioncable/app/assets/javascripts/actioncable.esm.js'))
  return createConsumer
}
