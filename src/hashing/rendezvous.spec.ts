import { blobUrl, placeKey, rankVolumes, scoreVolume, subvolumeDir, subvolumeOf } from './rendezvous';

const V1 = 'http://127.0.0.1:8081';
const V2 = 'http://127.0.0.1:8082';
const V3 = 'http://127.0.0.1:8083';
const V4 = 'http://127.0.0.1:8084';
const VOLUMES = [V1, V2, V3, V4];

/**
 * Computed outside this code base with Python, from the formula the README states:
 *   d = hashlib.sha256(key.encode() + volume.encode()).digest()
 *   ranked = sorted(volumes, key=lambda v: d[v], reverse=True)
 *   subvolume = int.from_bytes(d[ranked[0]][28:32], 'big') % 200
 *   path = '/'.join(urllib.parse.quote(s, safe="-_.!~*'()") for s in key.split('/'))
 */
const VECTORS: Array<{ key: string; ranked: string[]; firstScore: string; subvolume: number; url: string }> = [
  { key: 'hello', ranked: [V1, V2, V3, V4], firstScore: 'ddf23a79', subvolume: 64, url: `${V1}/sv40/hello` },
  { key: 'a/b/c', ranked: [V2, V3, V4, V1], firstScore: 'f3a5e7ec', subvolume: 51, url: `${V2}/sv33/a/b/c` },
  {
    key: '日本/語',
    ranked: [V3, V2, V1, V4],
    firstScore: 'f0e391ca',
    subvolume: 160,
    url: `${V3}/svA0/%E6%97%A5%E6%9C%AC/%E8%AA%9E`,
  },
  { key: 'sp ace/100%', ranked: [V4, V3, V2, V1], firstScore: '7cb3056e', subvolume: 134, url: `${V4}/sv86/sp%20ace/100%25` },
  {
    key: 'photos/2024/IMG_0001.jpg',
    ranked: [V2, V3, V1, V4],
    firstScore: 'f3993798',
    subvolume: 40,
    url: `${V2}/sv28/photos/2024/IMG_0001.jpg`,
  },
  { key: '\u{1F600}?#&=', ranked: [V1, V4, V2, V3], firstScore: 'fe7621cf', subvolume: 26, url: `${V1}/sv1A/%F0%9F%98%80%3F%23%26%3D` },
];

describe('rendezvous placement', () => {
  describe.each(VECTORS)('key $key', ({ key, ranked, firstScore, subvolume, url }) => {
    it('scores a volume with SHA-256 of key then volume', () => {
      expect(scoreVolume(key, ranked[0]).subarray(0, 4).toString('hex')).toBe(firstScore);
    });

    it('ranks all volumes by score, highest first', () => {
      expect(rankVolumes(key, VOLUMES)).toEqual(ranked);
    });

    it('places R replicas as the first R of the ranking', () => {
      expect(placeKey(key, VOLUMES, 1)).toEqual(ranked.slice(0, 1));
      expect(placeKey(key, VOLUMES, 3)).toEqual(ranked.slice(0, 3));
    });

    it('does not depend on the order the volumes are listed in', () => {
      expect(placeKey(key, [...VOLUMES].reverse(), 2)).toEqual(ranked.slice(0, 2));
    });

    it('ranks a subset of the volumes in the same relative order', () => {
      const subset = [V1, V3, V4];
      expect(rankVolumes(key, subset)).toEqual(ranked.filter((v) => subset.includes(v)));
    });

    it('picks the subvolume from the last 4 bytes of the score', () => {
      expect(subvolumeOf(key, ranked[0], 200)).toBe(subvolume);
    });

    it('builds the blob URL with the /svXX directory when subvolumes > 1', () => {
      expect(blobUrl(key, ranked[0], 200)).toBe(url);
    });

    it('builds the blob URL without a subvolume directory when subvolumes = 1', () => {
      expect(blobUrl(key, ranked[0], 1)).toBe(url.replace(/\/sv[0-9A-F]{2}\//, '/'));
    });
  });

  it('places more replicas than volumes as every volume once', () => {
    expect(placeKey('hello', [V1, V2], 3)).toEqual([V1, V2]);
  });

  it('moves only keys whose new first replica is an added volume, about a quarter of them', () => {
    const before = [V1, V2, V3];
    const after = [V1, V2, V3, V4];
    let changed = 0;
    for (let i = 0; i < 10_000; i++) {
      const key = `key-${i}`;
      const [oldFirst] = placeKey(key, before, 1);
      const [newFirst] = placeKey(key, after, 1);
      if (oldFirst !== newFirst) {
        changed++;
        expect(newFirst).toBe(V4);
      } else {
        expect(newFirst).not.toBe(V4);
      }
    }
    expect(changed).toBeGreaterThanOrEqual(2_000);
    expect(changed).toBeLessThanOrEqual(3_000);
  });
});

describe(subvolumeDir.name, () => {
  it.each([
    [0, '/sv00'],
    [8, '/sv08'],
    [10, '/sv0A'],
    [171, '/svAB'],
    [255, '/svFF'],
  ])('writes subvolume %i as %s', (subvolume, dir) => {
    expect(subvolumeDir(subvolume)).toBe(dir);
  });

  it('pads a one-digit subvolume in a blob URL', () => {
    // Python: int.from_bytes(sha256(b'hello' + V1)[28:32], 'big') % 16 == 8
    expect(blobUrl('hello', V1, 16)).toBe(`${V1}/sv08/hello`);
  });
});
