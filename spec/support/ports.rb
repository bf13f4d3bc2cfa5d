# frozen_string_literal: true

require "socket"

# A port on 127.0.0.1 for a server that must be told its port before it
# binds (a child process, a listener a server opens itself); where a server
# can bind port 0 and say which port it got, prefer that.
#
# Binding port 0, closing and passing the number on is racy: anything may
# take the port in between. Instead a socket bound to the port with
# SO_REUSEADDR, never listening, stays open until this process exits: the
# kernel gives the port to no other bind(0) and to no outgoing connection,
# while the server's own listener (SO_REUSEADDR, as Ruby's TCPServer, Puma,
# Ferrocable and redis-server set it) binds it freely, as often as it
# restarts.
module Ports
  HELD = []
  LOCK = Mutex.new

  def self.reserve
    socket = Socket.new(:INET, :STREAM)
    socket.setsockopt(:SOCKET, :REUSEADDR, true)
    socket.bind(Addrinfo.tcp("127.0.0.1", 0))
    LOCK.synchronize { HELD << socket }
    socket.local_address.ip_port
  end
end
