import { MkvError, MkvErrorCode } from './mkv-error';

export const MAX_KEY_BYTES = 1024;
/** A path segment is a file or directory name on the volume's filesystem (NAME_MAX). */
export const MAX_SEGMENT_BYTES = 255;
/** First path segment kept for the admin API. */
export const RESERVED_SEGMENT = '_admin';

/**
 * Turns the request path (without its leading '/' and query) into a key, or
 * throws 400 `invalid key: <reason>`. Dot-segments are refused because nginx's
 * autoindex hides dot-files (a rebuild could never find them) and the store
 * keeps dot-names for its own temporary uploads.
 */
export function parseKey(rawPath: string): string {
  let key: string;
  try {
    key = decodeURIComponent(rawPath);
  } catch {
    throw invalidKey('bad percent-encoding');
  }
  return validateKey(key);
}

/** The rules of parseKey for a key already decoded (say, a path found on a volume). */
export function validateKey(key: string): string {
  if (key.length === 0) throw invalidKey('empty');
  if (longerInUtf8(key, MAX_KEY_BYTES)) throw invalidKey(`longer than ${MAX_KEY_BYTES} bytes`);
  // C0, DEL and C1 (U+0080-U+009F: %C2%85 is NEL, %C2%9B is CSI, which terminals obey).
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(key)) throw invalidKey('contains a control character');
  if (key.endsWith('/')) throw invalidKey('ends with /');
  // One pass over the segments: this runs on every request of the key API.
  let start = 0;
  for (;;) {
    const end = key.indexOf('/', start);
    const segment = end === -1 ? key.slice(start) : key.slice(start, end);
    if (segment === '') throw invalidKey('empty path segment');
    if (segment.charCodeAt(0) === 0x2e) throw invalidKey('a path segment starts with .');
    if (longerInUtf8(segment, MAX_SEGMENT_BYTES)) throw invalidKey(`a path segment is longer than ${MAX_SEGMENT_BYTES} bytes`);
    if (start === 0 && segment === RESERVED_SEGMENT) throw invalidKey(`${RESERVED_SEGMENT} is reserved`);
    if (end === -1) return key;
    start = end + 1;
  }
}

/** True when the text's UTF-8 is over `max` bytes; counted only when it could be (a UTF-16 unit is at most 3 bytes of UTF-8). */
function longerInUtf8(text: string, max: number): boolean {
  return text.length * 3 > max && Buffer.byteLength(text, 'utf8') > max;
}

/** The path of a request URL without its leading '/' and query, still percent-encoded. */
export function rawPathOf(url: string): string {
  const queryAt = url.indexOf('?');
  return (queryAt === -1 ? url : url.slice(0, queryAt)).slice(1);
}

/**
 * True for a raw path in the admin API's namespace: decoded, its first segment
 * is `_admin` (as parseKey sees it, so `%5Fadmin` and `_admin%2Fx` count too).
 */
export function isAdminPath(rawPath: string): boolean {
  if (rawPath[0] !== '_' && rawPath[0] !== '%') return false; // most paths: no decoding on the read path
  try {
    return decodeURIComponent(rawPath).split('/', 1)[0] === RESERVED_SEGMENT;
  } catch {
    return false; // not a path the admin API has either; parseKey answers it
  }
}

export function invalidKey(reason: string): MkvError {
  return new MkvError(MkvErrorCode.InvalidRequest, `invalid key: ${reason}`);
}

/** The key as a URL path: each segment percent-encoded with encodeURIComponent. */
export function encodeKeyPath(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}
