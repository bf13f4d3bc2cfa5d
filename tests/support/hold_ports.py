#!/usr/bin/env python3
"""Reserves N ports on 127.0.0.1 for the shell scripts' child processes.

Prints them on one line, then holds them until stdin closes or it is killed.
Each is a socket bound with SO_REUSEADDR and never listening: the kernel gives
the port to no other bind(0) and to no outgoing connection, while the server
it is meant for (SO_REUSEADDR, as Ferrocable, Puma, grpc and redis-server set
it) binds it freely. Binding port 0, closing and passing the number on would
be racy: anything may take the port in between. (tests/common reserve_port and
spec/support/ports.rb do the same for Rust and Ruby.)

Usage from bash:
    coproc HOLDER { exec python3 tests/support/hold_ports.py 3; }
    read -r A B C <&"${HOLDER[0]}"      # kill "$HOLDER_PID" when done
"""
import socket
import sys

held = []
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held), flush=True)
sys.stdin.read()
