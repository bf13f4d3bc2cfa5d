// An HTTP RPC application written with @anycable/serverless-js, AnyCable's
// own JS implementation of the HTTP RPC server side: an independent check
// that the ferrocable binary speaks HTTP RPC as anycable-go does.
//
//   node server.mjs    (environment: HTTPRPC_SECRET, HTTPRPC_BROADCAST_URL,
//                       HTTPRPC_BROADCAST_KEY)
//
// Prints `listening <port>` once it serves on 127.0.0.1, on HTTPRPC_PORT
// (default 0: the OS picks). POST /_anycable/{connect,command,disconnect} are the RPC calls
// (401 without `Authorization: Bearer $HTTPRPC_SECRET`); GET /events is what
// the application saw, for the test to read.
import http from 'node:http'
import { register } from 'node:module'

register('./resolve.mjs', import.meta.url)
const { Application, Channel, handler, broadcaster } = await import('@anycable/serverless-js')

const secret = process.env.HTTPRPC_SECRET || ''
const broadcastTo = broadcaster(process.env.HTTPRPC_BROADCAST_URL, process.env.HTTPRPC_BROADCAST_KEY || '')
const events = []

class CableApplication extends Application {
  async connect(handle) {
    const cookie = handle.env.headers?.cookie || ''
    const user = /(?:^|;\s*)user=(\w+)/.exec(cookie)?.[1]
    events.push(['connect', user || null, handle.id])
    if (!user || user === 'nobody') {
      handle.reject()
      return
    }
    handle.identifiedBy({ user })
  }

  async disconnect(handle) {
    events.push(['disconnect', handle.identifiers?.user ?? null])
  }
}

class ChatChannel extends Channel {
  async subscribed(handle, params) {
    if (params.room === 'secret') {
      handle.reject()
      return
    }
    handle.streamFrom(`chat_${params.room}`)
  }

  async unsubscribed(handle, params) {
    events.push(['unsubscribed', handle.identifiers?.user ?? null, params.room])
  }

  async speak(handle, params, data) {
    await broadcastTo(`chat_${params.room}`, { text: data.text, from: handle.identifiers.user })
  }
}

const app = new CableApplication()
app.registerChannel('ChatChannel', new ChatChannel())

const server = http.createServer(async (req, res) => {
  if (req.method === 'GET' && req.url === '/events') {
    const body = JSON.stringify(events)
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
    return
  }
  if (req.method !== 'POST' || !req.url.startsWith('/_anycable/')) {
    res.writeHead(404).end()
    return
  }
  if (req.headers.authorization !== `Bearer ${secret}`) {
    events.push(['unauthorized', req.url])
    res.writeHead(401).end('Unauthorized')
    return
  }
  const request = {
    url: `http://${req.headers.host}${req.url}`,
    headers: new Headers(req.headers),
    body: req
  }
  try {
    const response = await handler(request, app)
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(response))
  } catch (error) {
    events.push(['error', String(error)])
    res.writeHead(500).end(String(error))
  }
})

server.listen(Number(process.env.HTTPRPC_PORT || 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`)
})
