import { ArgumentsHost, Catch, ExceptionFilter, HttpException, HttpStatus, Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { MkvError, MkvErrorCode } from '../common/mkv-error';

const STATUS_BY_CODE: Record<MkvErrorCode, number> = {
  [MkvErrorCode.InvalidRequest]: HttpStatus.BAD_REQUEST,
  [MkvErrorCode.BodyTimeout]: HttpStatus.REQUEST_TIMEOUT,
  [MkvErrorCode.NotFound]: HttpStatus.NOT_FOUND,
  [MkvErrorCode.MethodNotAllowed]: HttpStatus.METHOD_NOT_ALLOWED,
  [MkvErrorCode.MustUnlinkFirst]: HttpStatus.FORBIDDEN,
  [MkvErrorCode.KeyConflict]: HttpStatus.CONFLICT,
  [MkvErrorCode.JobConflict]: HttpStatus.CONFLICT,
  [MkvErrorCode.EmptyValue]: HttpStatus.LENGTH_REQUIRED,
  [MkvErrorCode.NotEnoughVolumes]: HttpStatus.SERVICE_UNAVAILABLE,
  [MkvErrorCode.VolumeDown]: HttpStatus.SERVICE_UNAVAILABLE,
  [MkvErrorCode.NoHealthyVolume]: HttpStatus.SERVICE_UNAVAILABLE,
  [MkvErrorCode.VolumeWriteFailed]: HttpStatus.BAD_GATEWAY,
  [MkvErrorCode.DatabaseError]: HttpStatus.INTERNAL_SERVER_ERROR,
  [MkvErrorCode.CorruptRecord]: HttpStatus.INTERNAL_SERVER_ERROR,
  [MkvErrorCode.DigestFailed]: HttpStatus.INTERNAL_SERVER_ERROR,
  [MkvErrorCode.NotSupported]: HttpStatus.NOT_IMPLEMENTED,
};

/** Of a body left unread by an error, at most this much is read and thrown away after the answer, ... */
export const DISCARDED_BODY_BYTES = 16 << 20;
/** ... for at most this long; then the connection is closed, whatever still arrives. */
export const DISCARDED_BODY_MS = 5_000;

/**
 * The single place where errors become HTTP: status from the domain code and a
 * plain-text body (the API's contract, for curl as much as for programs).
 */
@Catch()
export class MkvExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('mkv');

  catch(error: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    const reply = http.getResponse<FastifyReply>();
    const { status, message } = this.describe(error, request);

    if (reply.sent || reply.raw.destroyed) return; // the client went away mid-stream: nobody to answer
    if (!request.raw.complete) {
      // A request body we did not read (a PUT refused before or during
      // streaming): the connection is not reused, or the rest of the body
      // would be drained to its end first. A client still sending it is
      // given the time to read the answer, but one whose body stalled is not
      // waited for again.
      reply.header('connection', 'close');
      if (!(error instanceof MkvError && error.code === MkvErrorCode.BodyTimeout)) discardRestOfBody(request.raw);
    }
    reply.status(status).header('content-type', 'text/plain; charset=utf-8');
    if (error instanceof MkvError && error.allowedMethods) reply.header('allow', error.allowedMethods.join(', '));
    if (request.method === 'HEAD') reply.header('content-length', '0').send();
    else reply.send(message);
  }

  private describe(error: unknown, request: FastifyRequest): { status: number; message: string } {
    if (error instanceof MkvError) {
      const status = STATUS_BY_CODE[error.code];
      if (status >= 500) this.logger.warn({ reqId: request.id, msg: `${request.method} ${request.url}: ${error.message}` });
      return { status, message: error.message };
    }
    if (error instanceof HttpException) {
      const response = error.getResponse();
      const detail = typeof response === 'string' ? response : (response as { message?: unknown }).message;
      const message = Array.isArray(detail) ? detail.join('; ') : String(detail ?? error.message);
      return { status: error.getStatus(), message };
    }
    this.logger.error({ reqId: request.id, msg: `${request.method} ${request.url}: ${(error as Error)?.stack ?? String(error)}` });
    return { status: HttpStatus.INTERNAL_SERVER_ERROR, message: 'internal error' };
  }
}

/**
 * Node ends a `connection: close` answer with socket.destroySoon(): the
 * socket is destroyed as soon as the answer is written, the body bytes still
 * arriving are answered with a TCP reset, and a reset makes the client's
 * system drop what it has not read yet: a client busy sending its body gets a
 * broken pipe instead of the answer. Instead only our side is closed after
 * the answer, and the body is read and thrown away until the client closes
 * its side, or the bounds above are met.
 */
function discardRestOfBody(body: IncomingMessage): void {
  const socket = body.socket;
  if (!socket) return;
  const close = () => socket.destroy();
  const deadline = setTimeout(close, DISCARDED_BODY_MS).unref();
  socket.once('close', () => clearTimeout(deadline));
  socket.destroySoon = () => socket.end();
  let discarded = 0;
  body.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > DISCARDED_BODY_BYTES) close();
  });
  body.resume();
}
