// The chat page: the official Action Cable client (window.ActionCable, served
// by the app from the actioncable gem) talking to Ferrocable.
(function () {
  const list = document.getElementById('messages')
  const room = list.dataset.room
  const presence = document.getElementById('presence')
  const status = document.getElementById('status')
  const input = document.getElementById('body')

  function addMessage (m) {
    // History and live messages can overlap on a reconnect: one line per id.
    if (m.id && document.getElementById('m' + m.id)) return
    const li = document.createElement('li')
    if (m.id) li.id = 'm' + m.id
    li.className = 'message'
    const at = document.createElement('span')
    at.className = 'at'
    at.textContent = (m.at ? new Date(m.at) : new Date()).toLocaleTimeString()
    const user = document.createElement('span')
    user.className = 'user'
    user.textContent = m.user
    const body = document.createElement('span')
    body.className = 'body'
    body.textContent = m.body
    li.append(at, user, body)
    list.appendChild(li)
    list.scrollTop = list.scrollHeight
  }

  // Who is here: the server's presence set for the room (ChatChannel joins
  // it). The set comes with the `presence` command, then each join and
  // leave arrives as a message of the subscription.
  const here = new Map()
  function showPresence () {
    presence.replaceChildren(...[...here.keys()].sort().map((id) => {
      const li = document.createElement('li')
      li.textContent = here.get(id)?.name || id
      return li
    }))
  }

  // Who is typing: whispers from the others (never our own), each good for
  // a few seconds unless repeated.
  const typing = document.getElementById('typing')
  const typists = new Map()
  function showTyping () {
    const names = [...typists.keys()].sort()
    typing.textContent = names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : ''
  }
  function typed (user) {
    clearTimeout(typists.get(user))
    typists.set(user, setTimeout(() => { typists.delete(user); showTyping() }, 3000))
    showTyping()
  }

  const consumer = ActionCable.createConsumer()
  const chat = consumer.subscriptions.create({ channel: 'ChatChannel', room }, {
    connected () {
      status.textContent = 'connected'
      // The whole set, now (records with their info).
      consumer.send({ command: 'presence', identifier: this.identifier, data: JSON.stringify({ return_records: true }) })
    },
    disconnected () { status.textContent = 'disconnected' },
    rejected () { status.textContent = 'rejected' },
    received (data) {
      if (data.type === 'history') {
        document.getElementById('worker').textContent = `worker ${data.worker}`
        data.messages.forEach(addMessage)
      } else if (data.type === 'info') {
        here.clear()
        for (const r of data.records || []) here.set(r.id, r.info)
        showPresence()
      } else if (data.type === 'join') { here.set(data.id, data.info); showPresence() }
      else if (data.type === 'leave') { here.delete(data.id); showPresence() }
      else if (data.type === 'typing') typed(data.user)
      else if (data.type === 'message') {
        if (typists.has(data.user)) { clearTimeout(typists.get(data.user)); typists.delete(data.user); showTyping() }
        addMessage(data)
      }
    }
  })

  // A whisper at most every second while typing.
  let lastWhisper = 0
  input.addEventListener('input', () => {
    const now = Date.now()
    if (now - lastWhisper < 1000 || !input.value.trim()) return
    lastWhisper = now
    consumer.send({ command: 'whisper', identifier: chat.identifier, data: { type: 'typing', user: document.getElementById('me').textContent } })
  })

  document.getElementById('composer').addEventListener('submit', (event) => {
    event.preventDefault()
    const body = input.value.trim()
    if (!body) return
    chat.perform('speak', { body })
    input.value = ''
    lastWhisper = 0
  })
})()
