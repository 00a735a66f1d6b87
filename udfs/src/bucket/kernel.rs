//! Iceberg's bucket transform: `(murmur3_x86_32(bytes(v), seed 0) & i32::MAX) % n`, where
//! integers and dates are hashed as their 8-byte little-endian `long` value and strings as their
//! UTF-8 bytes (the Iceberg table spec, "Bucket Transform Details"). The lifecycle store buckets
//! rows by it, so any engine that implements the spec finds a key's bucket.

/// MurmurHash3, x86 32-bit variant.
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        h ^= C2.wrapping_mul(C1.wrapping_mul(k).rotate_left(15));
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k |= u32::from(*b) << (8 * i);
        }
        h ^= C2.wrapping_mul(C1.wrapping_mul(k).rotate_left(15));
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The Iceberg hash of an integer (int, long or date, all hashed as a long).
pub fn hash_long(v: i64) -> i32 {
    murmur3_x86_32(&v.to_le_bytes(), 0) as i32
}

/// The Iceberg hash of a string.
pub fn hash_str(v: &str) -> i32 {
    murmur3_x86_32(v.as_bytes(), 0) as i32
}

/// The bucket, in `0..n`, of a hash (`n` > 0).
pub fn bucket_of(hash: i32, n: u32) -> u32 {
    ((hash & i32::MAX) as u32) % n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iceberg_spec_vectors() {
        // Iceberg table spec, Appendix B: 32-bit hash requirements.
        assert_eq!(hash_long(34), 2017239379);
        assert_eq!(hash_str("iceberg"), 1210000089);
        // date 2017-11-16 = day 17486, hashed as a long.
        assert_eq!(hash_long(17486), -653330422);
        // Public MurmurHash3 x86_32 vectors (seed 0 and 1).
        assert_eq!(murmur3_x86_32(b"", 0), 0);
        assert_eq!(murmur3_x86_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_x86_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(
            murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
    }

    #[test]
    fn buckets_are_in_range_and_spread() {
        for n in [1u32, 2, 7, 16, 1000] {
            let mut seen = vec![0u32; n as usize];
            for v in -5000i64..5000 {
                let b = bucket_of(hash_long(v), n);
                assert!(b < n);
                seen[b as usize] += 1;
            }
            // 10,000 keys: every bucket of a small n is used.
            if n <= 16 {
                assert!(seen.iter().all(|c| *c > 0), "{n}: {seen:?}");
            }
        }
        assert_eq!(bucket_of(i32::MIN, 16), 0);
        assert_eq!(bucket_of(-1, 16), (i32::MAX as u32) % 16);
    }
}
