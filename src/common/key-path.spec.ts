import { MkvError, MkvErrorCode } from './mkv-error';
import { encodeKeyPath, parseKey } from './key-path';

function rejection(rawPath: string): MkvError {
  try {
    parseKey(rawPath);
  } catch (error) {
    return error as MkvError;
  }
  throw new Error(`parseKey(${JSON.stringify(rawPath)}) accepted the key`);
}

describe(parseKey.name, () => {
  it.each([
    ['plain', 'plain'],
    ['a/b/c', 'a/b/c'],
    ['sp ace/x', 'sp ace/x'],
    ['sp%20ace', 'sp ace'],
    ['100%25', '100%'],
    ['a%2Fb', 'a/b'],
    ['日本/語', '日本/語'],
    ['%E6%97%A5%E6%9C%AC', '日本'],
    ['\u{1F600}', '\u{1F600}'],
    ['x/_admin', 'x/_admin'],
    ['_adminx', '_adminx'],
    ['a.b/c.', 'a.b/c.'],
    ['%C2%A0nbsp', '\u00a0nbsp'], // U+00A0, the first code point after the C1 controls
  ])('accepts %j as %j', (rawPath, key) => {
    expect(parseKey(rawPath)).toBe(key);
  });

  it('accepts a 1024-byte key made of segments of at most 255 bytes', () => {
    const key = Array.from({ length: 5 }, (_, i) => String(i).repeat(204)).join('/');
    expect(Buffer.byteLength(key)).toBe(1024);
    expect(parseKey(key)).toBe(key);
  });

  it('accepts a 255-byte segment of multi-byte characters', () => {
    const segment = 'é'.repeat(127) + 'x'; // 2 * 127 + 1 = 255 bytes
    expect(parseKey(`a/${segment}`)).toBe(`a/${segment}`);
  });

  it('counts a segment of 3-byte characters in bytes: 85 of them (255 bytes) pass, 86 (258 bytes) do not', () => {
    expect(parseKey(`a/${'€'.repeat(85)}`)).toBe(`a/${'€'.repeat(85)}`);
    expect(() => parseKey(`a/${'€'.repeat(86)}`)).toThrow('a path segment is longer than 255 bytes');
  });

  it.each([
    ['', 'empty'],
    ['a'.repeat(1025), 'longer than 1024 bytes'],
    [Array.from({ length: 5 }, () => 'é'.repeat(102)).join('/') + '/x', 'longer than 1024 bytes'],
    ['a%00b', 'contains a control character'],
    ['a%1F', 'contains a control character'],
    ['a%7F', 'contains a control character'],
    // C1 controls, U+0080-U+009F: NEL (a line break to some log readers) and CSI (a terminal escape).
    ['a%C2%80', 'contains a control character'],
    ['a%C2%85b', 'contains a control character'],
    ['a%C2%9B31m', 'contains a control character'],
    ['a%C2%9F', 'contains a control character'],
    ['tab\there', 'contains a control character'],
    ['a/', 'ends with /'],
    ['/', 'ends with /'],
    ['a//b', 'empty path segment'],
    ['/a', 'empty path segment'],
    ['.', 'a path segment starts with .'],
    ['..', 'a path segment starts with .'],
    ['a/./b', 'a path segment starts with .'],
    ['a/../b', 'a path segment starts with .'],
    ['a/.hidden', 'a path segment starts with .'],
    ['%2Ehidden', 'a path segment starts with .'],
    ['x'.repeat(256), 'a path segment is longer than 255 bytes'],
    ['a/' + 'é'.repeat(128), 'a path segment is longer than 255 bytes'],
    ['_admin', '_admin is reserved'],
    ['_admin/jobs', '_admin is reserved'],
    ['%5Fadmin', '_admin is reserved'],
    ['100%', 'bad percent-encoding'],
    ['%zz', 'bad percent-encoding'],
    ['%E6%97', 'bad percent-encoding'],
  ])('rejects %j: %s', (rawPath, reason) => {
    const error = rejection(rawPath);
    expect(error).toBeInstanceOf(MkvError);
    expect(error.code).toBe(MkvErrorCode.InvalidRequest);
    expect(error.message).toBe(`invalid key: ${reason}`);
  });
});

describe(encodeKeyPath.name, () => {
  it.each([
    ['a/b/c', 'a/b/c'],
    ['sp ace/100%', 'sp%20ace/100%25'],
    ['q?x#y', 'q%3Fx%23y'],
    ['日本/語', '%E6%97%A5%E6%9C%AC/%E8%AA%9E'],
    ["keep-_.!~*'()", "keep-_.!~*'()"],
  ])('encodes %j as %s, keeping the slashes between segments', (key, path) => {
    expect(encodeKeyPath(key)).toBe(path);
  });
});
