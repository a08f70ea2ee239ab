//! SHA-256 of two messages at once, for verifying many files on one core.
//!
//! One SHA-256 stream cannot go faster than the latency of its round instruction: each
//! `sha256rnds2` waits on the one before. A core can issue them faster than that, so two
//! independent messages whose rounds are interleaved hash in nearly the time of one (on this
//! Zen 4 machine, 3.3 GB/s for the pair against 1.75 GB/s for one stream; see
//! `benches/bench_verify_small.py`). Batch verification hashes its small files in pairs here;
//! one large file stays a single stream (`hash.rs`).
//!
//! The two lanes run in step over the blocks both messages have; each message's remaining
//! blocks and its padding go through `sha2::compress256`, one lane. Without the SHA extensions
//! (another CPU, another architecture) both messages go through `sha2` one after the other.

use sha2::digest::generic_array::{typenum::U64, GenericArray};

use crate::hash::{to_hex, FileDigest};

const BLOCK: usize = 64;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The digests of `a` and `b`, as `hash.rs` gives them (lower-case hex and the length).
pub fn sha256_pair(a: &[u8], b: &[u8]) -> [FileDigest; 2] {
    let (mut state_a, mut state_b) = (H0, H0);
    let common = a.len().min(b.len()) / BLOCK;
    let done = if common > 0 && x86::available() {
        // SAFETY: the CPU has the extensions `compress_x2` is compiled for (checked just above),
        // and both slices hold at least `common` whole blocks.
        unsafe { x86::compress_x2(&mut state_a, &mut state_b, a.as_ptr(), b.as_ptr(), common) };
        common * BLOCK
    } else {
        0
    };
    [
        finish(state_a, &a[done..], a.len()),
        finish(state_b, &b[done..], b.len()),
    ]
}

/// The digest of one message, for a lane left without a partner.
pub fn sha256(bytes: &[u8]) -> FileDigest {
    finish(H0, bytes, bytes.len())
}

/// Hash the rest of a message (`rest`, whose whole message is `total` bytes long) on from
/// `state`, pad it and give the digest.
fn finish(mut state: [u32; 8], rest: &[u8], total: usize) -> FileDigest {
    let whole = rest.len() / BLOCK * BLOCK;
    compress(&mut state, &rest[..whole]);
    let tail = &rest[whole..];
    // The padding: 0x80, zeros, then the length in bits as a big-endian u64, filling one
    // block, or two where the tail leaves no room for the length.
    let mut last = [0u8; 2 * BLOCK];
    last[..tail.len()].copy_from_slice(tail);
    last[tail.len()] = 0x80;
    let end = if tail.len() + 1 + 8 <= BLOCK {
        BLOCK
    } else {
        2 * BLOCK
    };
    last[end - 8..end].copy_from_slice(&((total as u64) * 8).to_be_bytes());
    compress(&mut state, &last[..end]);
    let mut digest = [0u8; 32];
    for (out, word) in digest.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    FileDigest {
        sha256: to_hex(&digest),
        size: total as u64,
    }
}

/// `sha2`'s compression of whole blocks (SHA-NI where the CPU has it).
fn compress(state: &mut [u32; 8], blocks: &[u8]) {
    debug_assert_eq!(blocks.len() % BLOCK, 0);
    // SAFETY: `GenericArray<u8, U64>` is a `[u8; 64]` (alignment 1), and `blocks` holds
    // exactly `len / 64` of them.
    let blocks: &[GenericArray<u8, U64>] =
        unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast(), blocks.len() / BLOCK) };
    sha2::compress256(state, blocks);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// Whether this CPU has the SHA extensions and the SSE levels `compress_x2` uses.
    pub fn available() -> bool {
        is_x86_feature_detected!("sha")
            && is_x86_feature_detected!("sse4.1")
            && is_x86_feature_detected!("ssse3")
    }

    /// SHA-256's round constants (FIPS 180-4, 4.2.2).
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// One lane's message schedule step: the next four words from the last sixteen.
    #[inline(always)]
    unsafe fn schedule(w0: __m128i, w1: __m128i, w2: __m128i, w3: __m128i) -> __m128i {
        let t = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
        _mm_sha256msg2_epu32(t, w3)
    }

    /// The state as SHA-NI keeps it: (ABEF, CDGH).
    #[inline(always)]
    unsafe fn load(state: &[u32; 8]) -> (__m128i, __m128i) {
        let p = state.as_ptr().cast::<__m128i>();
        let cdab = _mm_shuffle_epi32(_mm_loadu_si128(p), 0xB1);
        let efgh = _mm_shuffle_epi32(_mm_loadu_si128(p.add(1)), 0x1B);
        (
            _mm_alignr_epi8(cdab, efgh, 8),
            _mm_blend_epi16(efgh, cdab, 0xF0),
        )
    }

    #[inline(always)]
    unsafe fn store(state: &mut [u32; 8], abef: __m128i, cdgh: __m128i) {
        let feba = _mm_shuffle_epi32(abef, 0x1B);
        let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
        let p = state.as_mut_ptr().cast::<__m128i>();
        _mm_storeu_si128(p, _mm_blend_epi16(feba, dchg, 0xF0));
        _mm_storeu_si128(p.add(1), _mm_alignr_epi8(dchg, feba, 8));
    }

    /// Four rounds of both lanes, the two dependency chains interleaved: `$i` is the round
    /// group (0..16), `$wa`/`$wb` each lane's four message words for it.
    macro_rules! rounds4 {
        ($i:expr, $abef_a:ident, $cdgh_a:ident, $wa:expr, $abef_b:ident, $cdgh_b:ident, $wb:expr) => {{
            let k = _mm_loadu_si128(K.as_ptr().add(4 * $i).cast::<__m128i>());
            let ta = _mm_add_epi32($wa, k);
            let tb = _mm_add_epi32($wb, k);
            $cdgh_a = _mm_sha256rnds2_epu32($cdgh_a, $abef_a, ta);
            $cdgh_b = _mm_sha256rnds2_epu32($cdgh_b, $abef_b, tb);
            $abef_a = _mm_sha256rnds2_epu32($abef_a, $cdgh_a, _mm_shuffle_epi32(ta, 0x0E));
            $abef_b = _mm_sha256rnds2_epu32($abef_b, $cdgh_b, _mm_shuffle_epi32(tb, 0x0E));
        }};
    }

    /// Compress `blocks` 64-byte blocks from `a` into `state_a` and as many from `b` into
    /// `state_b`, the two lanes' rounds interleaved.
    ///
    /// # Safety
    /// The CPU must have SHA, SSSE3 and SSE4.1 (`available()`), and `a` and `b` must each be
    /// valid for reads of `blocks * 64` bytes.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn compress_x2(
        state_a: &mut [u32; 8],
        state_b: &mut [u32; 8],
        a: *const u8,
        b: *const u8,
        blocks: usize,
    ) {
        // Byte order: each 32-bit message word is big-endian.
        let flip = _mm_set_epi64x(
            0x0C0D_0E0F_0809_0A0Bu64 as i64,
            0x0405_0607_0001_0203u64 as i64,
        );
        let (mut abef_a, mut cdgh_a) = load(state_a);
        let (mut abef_b, mut cdgh_b) = load(state_b);
        for block in 0..blocks {
            let (pa, pb) = (
                a.add(block * 64).cast::<__m128i>(),
                b.add(block * 64).cast::<__m128i>(),
            );
            let (saved_abef_a, saved_cdgh_a) = (abef_a, cdgh_a);
            let (saved_abef_b, saved_cdgh_b) = (abef_b, cdgh_b);
            let mut wa = [
                _mm_shuffle_epi8(_mm_loadu_si128(pa), flip),
                _mm_shuffle_epi8(_mm_loadu_si128(pa.add(1)), flip),
                _mm_shuffle_epi8(_mm_loadu_si128(pa.add(2)), flip),
                _mm_shuffle_epi8(_mm_loadu_si128(pa.add(3)), flip),
            ];
            let mut wb = [
                _mm_shuffle_epi8(_mm_loadu_si128(pb), flip),
                _mm_shuffle_epi8(_mm_loadu_si128(pb.add(1)), flip),
                _mm_shuffle_epi8(_mm_loadu_si128(pb.add(2)), flip),
                _mm_shuffle_epi8(_mm_loadu_si128(pb.add(3)), flip),
            ];
            rounds4!(0, abef_a, cdgh_a, wa[0], abef_b, cdgh_b, wb[0]);
            rounds4!(1, abef_a, cdgh_a, wa[1], abef_b, cdgh_b, wb[1]);
            rounds4!(2, abef_a, cdgh_a, wa[2], abef_b, cdgh_b, wb[2]);
            rounds4!(3, abef_a, cdgh_a, wa[3], abef_b, cdgh_b, wb[3]);
            // Groups 4..16: the four words of group i replace those of group i - 4. Written
            // out (a macro per group) so that every index is a constant and `wa`/`wb` live
            // in registers.
            macro_rules! group {
                ($i:expr, $j0:expr, $j1:expr, $j2:expr, $j3:expr) => {{
                    wa[$j0] = schedule(wa[$j0], wa[$j1], wa[$j2], wa[$j3]);
                    wb[$j0] = schedule(wb[$j0], wb[$j1], wb[$j2], wb[$j3]);
                    rounds4!($i, abef_a, cdgh_a, wa[$j0], abef_b, cdgh_b, wb[$j0]);
                }};
            }
            group!(4, 0, 1, 2, 3);
            group!(5, 1, 2, 3, 0);
            group!(6, 2, 3, 0, 1);
            group!(7, 3, 0, 1, 2);
            group!(8, 0, 1, 2, 3);
            group!(9, 1, 2, 3, 0);
            group!(10, 2, 3, 0, 1);
            group!(11, 3, 0, 1, 2);
            group!(12, 0, 1, 2, 3);
            group!(13, 1, 2, 3, 0);
            group!(14, 2, 3, 0, 1);
            group!(15, 3, 0, 1, 2);
            abef_a = _mm_add_epi32(abef_a, saved_abef_a);
            cdgh_a = _mm_add_epi32(cdgh_a, saved_cdgh_a);
            abef_b = _mm_add_epi32(abef_b, saved_abef_b);
            cdgh_b = _mm_add_epi32(cdgh_b, saved_cdgh_b);
        }
        store(state_a, abef_a, cdgh_a);
        store(state_b, abef_b, cdgh_b);
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    pub fn available() -> bool {
        false
    }

    pub unsafe fn compress_x2(
        _: &mut [u32; 8],
        _: &mut [u32; 8],
        _: *const u8,
        _: *const u8,
        _: usize,
    ) {
        unreachable!("available() is false off x86_64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn reference(bytes: &[u8]) -> FileDigest {
        FileDigest {
            sha256: to_hex(&Sha256::digest(bytes)),
            size: bytes.len() as u64,
        }
    }

    /// Bytes that differ from block to block and between the two messages.
    fn message(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[test]
    fn known_vectors_in_either_lane() {
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let [x, y] = sha256_pair(b"abc", b"");
        assert_eq!((x.sha256.as_str(), y.sha256.as_str()), (abc, empty));
        let [x, y] = sha256_pair(b"", b"abc");
        assert_eq!((x.sha256.as_str(), y.sha256.as_str()), (empty, abc));
    }

    /// Every length around the padding's edges (55, 56, 63, 64 bytes into a block) and
    /// around whole blocks, paired with lengths shorter, equal and longer, equals `sha2`.
    #[test]
    fn equals_sha2_for_every_pair_of_edge_lengths() {
        let mut lengths = vec![];
        for blocks in [0, 1, 2, 3, 17] {
            for extra in [0, 1, 54, 55, 56, 57, 63] {
                lengths.push(blocks * BLOCK + extra);
            }
        }
        for (i, &la) in lengths.iter().enumerate() {
            for &lb in &lengths {
                let (a, b) = (message(la, i as u32), message(lb, 1000 + lb as u32));
                let [da, db] = sha256_pair(&a, &b);
                assert_eq!(da, reference(&a), "lane a, {la} bytes beside {lb}");
                assert_eq!(db, reference(&b), "lane b, {lb} bytes beside {la}");
            }
        }
    }

    /// A 64 KiB LoRA-sized pair, and a byte changed anywhere in either lane changes that
    /// lane's digest only.
    #[test]
    fn one_changed_byte_changes_its_own_lane_only() {
        let a = message(65_752, 7);
        let b = message(65_752, 8);
        let [da, db] = sha256_pair(&a, &b);
        assert_eq!((da.clone(), db.clone()), (reference(&a), reference(&b)));
        for at in [0, 63, 64, 4_096, 65_535, 65_751] {
            let mut bent = a.clone();
            bent[at] ^= 1;
            let [xa, xb] = sha256_pair(&bent, &b);
            assert_ne!(xa, da, "a byte at {at}");
            assert_eq!(xa, reference(&bent));
            assert_eq!(xb, db);
            let [ya, yb] = sha256_pair(&a, &bent);
            assert_eq!((ya, yb), (da.clone(), reference(&bent)));
        }
    }
}
