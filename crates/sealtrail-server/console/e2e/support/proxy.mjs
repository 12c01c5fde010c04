// A TCP proxy in front of the server that a test can cut: every open connection is closed
// and new ones are refused until it is let through again. The browser sees a network drop
// while the server keeps running (and keeps its in-memory sessions).

import { createServer, connect } from 'node:net';

export async function startCuttableProxy(targetPort) {
  const sockets = new Set();
  let cut = false;
  const server = createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      socket.on('error', () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** Drops every connection and refuses new ones. */
    cut() {
      cut = true;
      for (const socket of sockets) socket.destroy();
    },
    /** Lets connections through again. */
    restore() {
      cut = false;
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
