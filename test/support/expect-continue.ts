import { connect, Socket } from 'node:net';

export interface ExpectingPut {
  socket: Socket;
  /** The first answer, received before any byte of the body was sent. */
  first: string;
  /** Sends the body; resolves with the next answer. */
  sendBody(): Promise<string>;
}

/**
 * Sends the headers of a `PUT path` with `Expect: 100-continue` and waits for
 * the first answer with the body unsent, as curl does for a large upload. The
 * caller destroys the socket.
 */
export async function putExpectingContinue(serverUrl: string, path: string, body: string): Promise<ExpectingPut> {
  const { port } = new URL(serverUrl);
  const socket = connect(Number(port), '127.0.0.1');
  socket.on('error', () => undefined);
  const received: Buffer[] = [];
  let arrived: () => void = () => undefined;
  socket.on('data', (chunk: Buffer) => {
    received.push(chunk);
    arrived();
  });
  const nextAnswer = () =>
    new Promise<string>((done) => {
      arrived = () => done(Buffer.concat(received.splice(0)).toString());
      if (received.length > 0) arrived();
    });
  const first = nextAnswer();
  socket.write(`PUT ${path} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
  const sendBody = () => {
    const answer = nextAnswer();
    socket.write(body);
    return answer;
  };
  return { socket, first: await first, sendBody };
}
