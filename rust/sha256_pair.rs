//! SHA-256 of two streams at once, for verifying many files on one core.
//!
//! One SHA-256 stream cannot go faster than the latency of its round instruction: each
//! `sha256rnds2` waits on the one before. A core can issue them faster than that, so two
//! independent streams whose rounds are interleaved hash in nearly the time of one (on the
//! benches' Zen 4 CPU, 2.5 to 3.3 GB/s for the pair against 1.75 GB/s for one stream). Batch
//! verification reads its files two at a time and hashes them here (`hash_two_into`); one
//! file alone stays a single stream (`hash.rs`).
//!
//! Each stream is a `Lane`: its SHA-256 state over the whole blocks it has taken. The two
//! lanes take their blocks together while both have some (`compress_pair`); the rest of a
//! longer stream, and each stream's padding, go through `sha2::compress256`, one lane. Without
//! the SHA extensions (another CPU, another architecture) each lane goes through `sha2` alone.

use std::io::{self, Read};

use sha2::digest::generic_array::{typenum::U64, GenericArray};

use crate::hash::{to_hex, FileDigest};

#[cfg(not(target_arch = "x86_64"))]
use no_shani as shani;

const BLOCK: usize = 64;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A running SHA-256 over whole 64-byte blocks.
#[derive(Clone, Copy)]
pub struct Lane {
    state: [u32; 8],
}

impl Default for Lane {
    fn default() -> Self {
        Lane { state: H0 }
    }
}

impl Lane {
    /// Take `blocks`, whole blocks only (its length a multiple of 64).
    pub fn compress(&mut self, blocks: &[u8]) {
        assert_eq!(blocks.len() % BLOCK, 0, "whole blocks only");
        // SAFETY: `GenericArray<u8, U64>` is a `[u8; 64]` (alignment 1), and `blocks` holds
        // exactly `len / 64` of them.
        let blocks: &[GenericArray<u8, U64>] =
            unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast(), blocks.len() / BLOCK) };
        sha2::compress256(&mut self.state, blocks);
    }

    /// The digest of a stream of `total` bytes, of which `rest` (any length) are the last
    /// ones not yet taken: they are taken, the padding added.
    pub fn finish(mut self, rest: &[u8], total: u64) -> FileDigest {
        let whole = rest.len() / BLOCK * BLOCK;
        self.compress(&rest[..whole]);
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
        last[end - 8..end].copy_from_slice(&total.wrapping_mul(8).to_be_bytes());
        self.compress(&last[..end]);
        let mut digest = [0u8; 32];
        for (out, word) in digest.chunks_exact_mut(4).zip(self.state) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        FileDigest {
            sha256: to_hex(&digest),
            size: total,
        }
    }
}

/// Whether this CPU takes two lanes' rounds interleaved (`compress_pair` then runs both lanes
/// in about the time of one; else one after the other).
pub fn pairs_interleave() -> bool {
    shani::available()
}

/// `a` takes `a_blocks` and `b` takes `b_blocks`, both whole blocks and of one length, their
/// rounds interleaved where the CPU allows.
pub fn compress_pair(a: &mut Lane, a_blocks: &[u8], b: &mut Lane, b_blocks: &[u8]) {
    assert_eq!(a_blocks.len(), b_blocks.len(), "one length for both lanes");
    assert_eq!(a_blocks.len() % BLOCK, 0, "whole blocks only");
    if shani::available() {
        // SAFETY: the CPU has the extensions `compress_x2` is compiled for (checked just
        // above), and both slices hold `len / 64` whole blocks.
        unsafe {
            shani::compress_x2(
                &mut a.state,
                &mut b.state,
                a_blocks.as_ptr(),
                b_blocks.as_ptr(),
                a_blocks.len() / BLOCK,
            )
        };
    } else {
        a.compress(a_blocks);
        b.compress(b_blocks);
    }
}

/// Hash two readers at once on this thread, each through its own buffer (at least a block
/// long), calling `on_chunk` with each read's length. `lens` are their sizes from fstat: as
/// in `hash::hash_regular_into`, a read that leaves its buffer short once a reader's size is
/// in is its end (no read that returns 0), a short read before that (NFS) is read on from, and
/// a file that grew is read to its real end. One reader's error ends that one only.
pub fn hash_two_into<R: Read>(
    readers: [&mut R; 2],
    lens: [u64; 2],
    bufs: [&mut [u8]; 2],
    mut on_chunk: impl FnMut(usize),
) -> [io::Result<FileDigest>; 2] {
    let [ra, rb] = readers;
    let [ba, bb] = bufs;
    let mut streams = [Stream::new(ra, lens[0], ba), Stream::new(rb, lens[1], bb)];
    let mut out: [Option<io::Result<FileDigest>>; 2] = [None, None];
    loop {
        for (stream, out) in streams.iter_mut().zip(&mut out) {
            if out.is_some() {
                continue;
            }
            if let Err(e) = stream.fill(&mut on_chunk) {
                *out = Some(Err(e));
            } else if stream.ended && stream.whole_blocks() == 0 {
                *out = Some(Ok(stream.finish()));
            }
        }
        let [a, b] = &mut streams;
        match (out[0].is_none(), out[1].is_none()) {
            (true, true) => {
                let both = a.whole_blocks().min(b.whole_blocks());
                let ((lane_a, blocks_a), (lane_b, blocks_b)) = (a.take(both), b.take(both));
                compress_pair(lane_a, blocks_a, lane_b, blocks_b);
            }
            (true, false) => a.compress_alone(),
            (false, true) => b.compress_alone(),
            (false, false) => break,
        }
    }
    out.map(|o| o.expect("both streams ended"))
}

/// One reader being hashed: its buffer holds `buf[lo..hi]` not yet taken.
struct Stream<'a, R> {
    reader: &'a mut R,
    len: u64,
    buf: &'a mut [u8],
    lo: usize,
    hi: usize,
    read: u64,
    ended: bool,
    lane: Lane,
}

impl<'a, R: Read> Stream<'a, R> {
    fn new(reader: &'a mut R, len: u64, buf: &'a mut [u8]) -> Self {
        assert!(buf.len() >= BLOCK, "a buffer holds at least a block");
        Stream {
            reader,
            len,
            buf,
            lo: 0,
            hi: 0,
            read: 0,
            ended: false,
            lane: Lane::default(),
        }
    }

    /// Read once more where less than a block is waiting and the reader has not ended: the
    /// partial block moves to the front and the read lands after it.
    fn fill(&mut self, on_chunk: &mut impl FnMut(usize)) -> io::Result<()> {
        if self.ended || self.hi - self.lo >= BLOCK {
            return Ok(());
        }
        self.buf.copy_within(self.lo..self.hi, 0);
        (self.hi, self.lo) = (self.hi - self.lo, 0);
        let room = self.buf.len() - self.hi;
        let n = loop {
            match self.reader.read(&mut self.buf[self.hi..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.hi += n;
        self.read += n as u64;
        on_chunk(n);
        self.ended = n == 0 || (n < room && self.read >= self.len);
        Ok(())
    }

    fn whole_blocks(&self) -> usize {
        (self.hi - self.lo) / BLOCK * BLOCK
    }

    /// The next `n` bytes waiting, taken out of the buffer, and the lane they go to.
    fn take(&mut self, n: usize) -> (&mut Lane, &[u8]) {
        self.lo += n;
        (&mut self.lane, &self.buf[self.lo - n..self.lo])
    }

    fn compress_alone(&mut self) {
        let (lane, blocks) = self.take(self.whole_blocks());
        lane.compress(blocks);
    }

    fn finish(&self) -> FileDigest {
        self.lane.finish(&self.buf[self.lo..self.hi], self.read)
    }
}

#[cfg(target_arch = "x86_64")]
mod shani {
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
mod no_shani {
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

    /// A reader over bytes that gives at most `most` bytes per read, then fails if `fail`;
    /// with `interrupt`, every other read is cut off by a signal (EINTR) before it reads.
    struct Trickle<'a> {
        data: &'a [u8],
        most: usize,
        fail: bool,
        interrupt: bool,
        calls: usize,
    }

    impl<'a> Trickle<'a> {
        fn new(data: &'a [u8], most: usize) -> Self {
            Trickle {
                data,
                most,
                fail: false,
                interrupt: false,
                calls: 0,
            }
        }
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.interrupt && self.calls % 2 == 1 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            if self.data.is_empty() && self.fail {
                return Err(io::Error::other("the disk went away"));
            }
            let n = buf.len().min(self.most).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// `hash_two_into` over `a` and `b` through buffers of `buffer` bytes, reads of at most
    /// `most` (every other one interrupted where `interrupt`), sizes as given; also the bytes
    /// `on_chunk` counted.
    fn pair_of(
        [a, b]: [&[u8]; 2],
        lens: [u64; 2],
        buffer: usize,
        (most, interrupt): (usize, bool),
    ) -> ([io::Result<FileDigest>; 2], usize) {
        let (mut ra, mut rb) = (Trickle::new(a, most), Trickle::new(b, most));
        (ra.interrupt, rb.interrupt) = (interrupt, interrupt);
        let (mut ba, mut bb) = (vec![0u8; buffer], vec![7u8; buffer]);
        let mut counted = 0;
        let out = hash_two_into([&mut ra, &mut rb], lens, [&mut ba, &mut bb], |n| {
            counted += n
        });
        (out, counted)
    }

    fn pair(a: &[u8], b: &[u8], buffer: usize, reads: (usize, bool)) -> [FileDigest; 2] {
        let lens = [a.len() as u64, b.len() as u64];
        let (out, counted) = pair_of([a, b], lens, buffer, reads);
        assert_eq!(counted, a.len() + b.len());
        out.map(|d| d.expect("no error"))
    }

    const WHOLE: (usize, bool) = (usize::MAX, false);

    #[test]
    fn known_vectors_in_either_lane() {
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let two_blocks = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
        let million_a = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        let many = vec![b'a'; 1_000_000];
        let cases: [(&[u8], &str); 4] = [
            (b"abc", abc),
            (long, two_blocks),
            (&many, million_a),
            (b"", empty),
        ];
        for (a, want_a) in cases {
            for (b, want_b) in cases {
                let [x, y] = pair(a, b, 4096, WHOLE);
                assert_eq!((x.sha256.as_str(), y.sha256.as_str()), (want_a, want_b));
            }
        }
    }

    /// Every length around the padding's edges (55, 56, 63, 64 bytes into a block) and
    /// around whole blocks, paired with lengths shorter, equal and longer, through buffers
    /// of one block and of a few, whole reads and short ones: the digests equal `sha2`'s.
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
                for (buffer, reads) in [(64, WHOLE), (200, (77, true)), (4096, WHOLE)] {
                    let [da, db] = pair(&a, &b, buffer, reads);
                    let how = format!("{la} bytes beside {lb}, buffer {buffer}, reads {reads:?}");
                    assert_eq!(da, reference(&a), "lane a: {how}");
                    assert_eq!(db, reference(&b), "lane b: {how}");
                }
            }
        }
    }

    /// A 64 KiB LoRA-sized pair, and a byte changed anywhere in either lane changes that
    /// lane's digest only.
    #[test]
    fn one_changed_byte_changes_its_own_lane_only() {
        let a = message(65_752, 7);
        let b = message(65_752, 8);
        let hash = |a: &[u8], b: &[u8]| pair(a, b, 1 << 19, WHOLE);
        let [da, db] = hash(&a, &b);
        assert_eq!((da.clone(), db.clone()), (reference(&a), reference(&b)));
        for at in [0, 63, 64, 4_096, 65_535, 65_751] {
            let mut bent = a.clone();
            bent[at] ^= 1;
            let [xa, xb] = hash(&bent, &b);
            assert_ne!(xa, da, "a byte at {at}");
            assert_eq!((xa, xb), (reference(&bent), db.clone()));
            let [ya, yb] = hash(&a, &bent);
            assert_eq!((ya, yb), (da.clone(), reference(&bent)));
        }
    }

    /// A file that grew after its fstat is read to its real end, one that shrank to where
    /// it ends; a reader's error ends that lane only.
    #[test]
    fn sizes_that_lie_and_errors_end_one_lane_at_a_time() {
        let (a, b) = (message(10_000, 1), message(3_000, 2));
        let (out, _) = pair_of([&a, &b], [100, 9_999], 512, WHOLE);
        let [x, y] = out.map(Result::unwrap);
        assert_eq!((x, y), (reference(&a), reference(&b)));
        // Lane a fails after 1,000 bytes; lane b, 50 times longer, reads on to its end.
        let (a, b) = (message(1_000, 3), message(50_000, 4));
        let mut ra = Trickle::new(&a, 700);
        ra.fail = true;
        let mut rb = Trickle::new(&b, 700);
        let (mut ba, mut bb) = (vec![0u8; 1024], vec![0u8; 1024]);
        let lens = [20_000, 50_000];
        let [x, y] = hash_two_into([&mut ra, &mut rb], lens, [&mut ba, &mut bb], |_| {});
        assert_eq!(x.unwrap_err().to_string(), "the disk went away");
        assert_eq!(y.unwrap(), reference(&b));
    }

    /// The timings rest on this: on a CPU whose flags list the SHA extensions, the lanes'
    /// rounds are interleaved (a typo in the detection would quietly hash one lane at a time).
    #[test]
    fn the_lanes_interleave_where_the_cpu_has_sha() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let has_sha = cpuinfo
            .lines()
            .filter(|line| line.starts_with("flags"))
            .any(|line| line.split_whitespace().any(|flag| flag == "sha_ni"));
        assert_eq!(pairs_interleave(), has_sha && cfg!(target_arch = "x86_64"));
    }
}
