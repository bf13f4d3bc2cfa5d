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

  function showPresence (users) {
    presence.replaceChildren(...users.map((u) => {
      const li = document.createElement('li')
      li.textContent = u
      return li
    }))
  }

  const consumer = ActionCable.createConsumer()
  const chat = consumer.subscriptions.create({ channel: 'ChatChannel', room }, {
    connected () { status.textContent = 'connected' },
    disconnected () { status.textContent = 'disconnected' },
    rejected () { status.textContent = 'rejected' },
    received (data) {
      if (data.type === 'history') data.messages.forEach(addMessage)
      else if (data.type === 'presence') showPresence(data.users)
      else if (data.type === 'message') addMessage(data)
    }
  })

  document.getElementById('composer').addEventListener('submit', (event) => {
    event.preventDefault()
    const body = input.value.trim()
    if (!body) return
    chat.perform('speak', { body })
    input.value = ''
  })
})()
