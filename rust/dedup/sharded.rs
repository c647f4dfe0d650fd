//! The sharded form of the multi-index search, for engines that shuffle rows
//! between machines (Ray, Spark; see `fastprep.distributed`).
//!
//! Every record is filed under its *index key* `(slot, value)` for each slot
//! and sent as a *probe* to `(slot, value ^ mask)` for every mask of the
//! [`SlotPlan`]; keys are hashed to shards. A shard checks each key's probes
//! against its indexed records on the full hash and keeps a pair only from
//! its first slot within `t` bits (the same rule as [`super::mih`]), with the
//! smaller id as the probe in a self-join: the shards' outputs are disjoint
//! and together exactly the single-machine pairs.

use rayon::prelude::*;

use super::hashes::HashSet;
use super::mih::search_query;
use super::pigeonhole::SlotPlan;
use crate::error::CoreError;

/// Role bits of an entry.
pub const INDEXED: i8 = 1;
pub const PROBE: i8 = 2;

/// `n` hashes of `width` bytes, big-endian, back to back (Arrow's
/// `fixed_size_binary` layout). Any width: 8-bit slots fit odd ones too.
#[derive(Clone, Copy, Debug)]
pub struct ByteHashes<'a> {
    pub width: usize,
    pub data: &'a [u8],
}

impl<'a> ByteHashes<'a> {
    pub fn new(width: usize, data: &'a [u8]) -> Result<ByteHashes<'a>, CoreError> {
        if width == 0 || data.len() % width != 0 {
            return Err(CoreError::InvalidData(
                "hash data is not a whole number of hashes".into(),
            ));
        }
        Ok(ByteHashes { width, data })
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.width
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    #[inline]
    pub fn get(&self, i: usize) -> &'a [u8] {
        &self.data[i * self.width..(i + 1) * self.width]
    }

    /// Slot `s` of hash `i`: `slot_bits / 8` bytes read big-endian, so slot 0
    /// of a 16-bit plan is the first two bytes, as [`HashSet::slot`] reads it.
    #[inline]
    pub fn slot(&self, i: usize, s: usize, slot_bits: u32) -> u64 {
        let step = slot_bits as usize / 8;
        let start = i * self.width + s * step;
        self.data[start..start + step]
            .iter()
            .fold(0u64, |v, &b| (v << 8) | u64::from(b))
    }

    /// The hashes at `rows` as a [`HashSet`] (width a multiple of 8 bytes).
    fn subset(&self, rows: &[usize]) -> Option<HashSet> {
        let mut bytes = Vec::with_capacity(rows.len() * self.width);
        rows.iter()
            .for_each(|&r| bytes.extend_from_slice(self.get(r)));
        HashSet::from_bytes(&bytes, self.width).ok()
    }
}

#[inline]
fn distance(a: &[u8], b: &[u8]) -> u32 {
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: u32 = wa
        .remainder()
        .iter()
        .zip(wb.remainder())
        .map(|(x, y)| (x ^ y).count_ones())
        .sum();
    let words: u32 = wa
        .zip(wb)
        .map(|(x, y)| {
            let x = u64::from_ne_bytes(x.try_into().unwrap_or_default());
            let y = u64::from_ne_bytes(y.try_into().unwrap_or_default());
            (x ^ y).count_ones()
        })
        .sum();
    words + tail
}

/// Which side of a join a block of hashes is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A self-join: indexed and probing.
    Both,
    /// The reference side of a query join.
    Index,
    /// The query side of a query join.
    Probe,
}

impl Role {
    pub fn from_name(name: &str) -> Result<Role, CoreError> {
        match name {
            "both" => Ok(Role::Both),
            "index" => Ok(Role::Index),
            "probe" => Ok(Role::Probe),
            _ => Err(CoreError::InvalidArgument(
                "role must be 'both', 'index' or 'probe'".into(),
            )),
        }
    }
}

/// The index entries of one block, column by column. `record` indexes the
/// block's hashes (the caller attaches ids and hash bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entries {
    pub shard: Vec<i32>,
    pub slot: Vec<i16>,
    pub key: Vec<i64>,
    pub role: Vec<i8>,
    pub record: Vec<u32>,
}

/// The shard of key `(slot, key)`: Fibonacci hashing, stable across releases
/// and engines (a resumed job must route keys as before).
pub fn shard_of(slot: u64, key: u64, num_shards: u64) -> i32 {
    let mixed = ((slot << 32) ^ key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((mixed >> 33) % num_shards) as i32
}

/// Every entry `hashes` contribute: record-major, then slot, then mask (the
/// indexed key, mask 0, first).
pub fn slot_entries(
    hashes: &ByteHashes,
    radius: i64,
    num_shards: u32,
    slot_bits: u32,
    role: Role,
) -> Result<Entries, CoreError> {
    if num_shards == 0 {
        return Err(CoreError::InvalidArgument(
            "num_shards must be at least 1".into(),
        ));
    }
    let plan = SlotPlan::new(radius, (hashes.width * 8) as u32, slot_bits)?;
    let masks = if role == Role::Index {
        vec![0]
    } else {
        plan.masks()?
    };
    let first_role = match role {
        Role::Both => INDEXED | PROBE,
        Role::Index => INDEXED,
        Role::Probe => PROBE,
    };
    let total = hashes.len() * plan.slots * masks.len();
    let mut out = Entries {
        shard: Vec::with_capacity(total),
        slot: Vec::with_capacity(total),
        key: Vec::with_capacity(total),
        role: Vec::with_capacity(total),
        record: Vec::with_capacity(total),
    };
    for i in 0..hashes.len() {
        for s in 0..plan.slots {
            let value = hashes.slot(i, s, slot_bits);
            for (m, &mask) in masks.iter().enumerate() {
                let key = value ^ mask;
                out.shard
                    .push(shard_of(s as u64, key, u64::from(num_shards)));
                out.slot.push(s as i16);
                out.key.push(key as i64);
                out.role.push(if m == 0 { first_role } else { PROBE });
                out.record.push(i as u32);
            }
        }
    }
    Ok(out)
}

/// One shard's entries, as [`slot_entries`] made them and a shuffle grouped
/// them; `hashes` holds each entry's hash.
pub struct ShardEntries<'a> {
    pub slot: &'a [i16],
    pub key: &'a [i64],
    pub role: &'a [i8],
    pub id: &'a [i64],
    pub hashes: ByteHashes<'a>,
}

/// A pair found by a shard: probe id, indexed id, distance.
pub type IdPair = (i64, i64, u32);

/// The pairs one shard reports, sorted. Keys with at least `index_min`
/// candidate pairs are searched through the multi-index (clustered hashes
/// make such keys), the rest by comparing every probe with every record.
pub fn verify_entries(
    entries: &ShardEntries,
    radius: i64,
    slot_bits: u32,
    self_join: bool,
    index_min: u64,
) -> Result<Vec<IdPair>, CoreError> {
    let n = entries.slot.len();
    let lengths = [entries.key.len(), entries.role.len(), entries.id.len()];
    if lengths.iter().any(|&l| l != n) || entries.hashes.len() != n {
        return Err(CoreError::InvalidArgument(
            "entry columns differ in length".into(),
        ));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let hashes = entries.hashes;
    let plan = SlotPlan::new(radius, (hashes.width * 8) as u32, slot_bits)?;
    let radius = radius as u64;
    let code = |i: usize| ((entries.slot[i] as u64) << slot_bits) | entries.key[i] as u64;
    let sorted_by_code = |bit: i8| {
        let mut rows: Vec<usize> = (0..n).filter(|&i| entries.role[i] & bit != 0).collect();
        rows.sort_by_key(|&i| (code(i), i));
        rows
    };
    let (indexed, probes) = (sorted_by_code(INDEXED), sorted_by_code(PROBE));
    let groups = key_groups(&probes, &indexed, code);

    let keep = |p: usize, m: usize, d: u32, out: &mut Vec<IdPair>| {
        let (a, b) = (entries.id[p], entries.id[m]);
        if self_join && a >= b {
            return;
        }
        let s = entries.slot[p] as usize;
        let first = plan.reports_at(s, |e| {
            (hashes.slot(p, e, slot_bits) ^ hashes.slot(m, e, slot_bits)).count_ones()
        });
        if first {
            out.push((a, b, d));
        }
    };
    let mut pairs: Vec<IdPair> = groups
        .par_iter()
        .flat_map_iter(|&(ps, ms)| {
            let (group, members) = (&probes[ps.0..ps.1], &indexed[ms.0..ms.1]);
            let mut out = Vec::new();
            let large = (group.len() as u64).saturating_mul(members.len() as u64) >= index_min;
            let sets = large
                .then(|| hashes.subset(group).zip(hashes.subset(members)))
                .flatten();
            match sets.and_then(|(q, r)| search_query(&q, &r, radius as u32).ok()) {
                Some(found) => {
                    for pair in found {
                        let (p, m) = (group[pair.a as usize], members[pair.b as usize]);
                        keep(p, m, pair.distance, &mut out);
                    }
                }
                None => {
                    for &p in group {
                        for &m in members {
                            if self_join && entries.id[p] >= entries.id[m] {
                                continue;
                            }
                            let d = distance(hashes.get(p), hashes.get(m));
                            if u64::from(d) <= radius {
                                keep(p, m, d, &mut out);
                            }
                        }
                    }
                }
            }
            out
        })
        .collect();
    pairs.par_sort_unstable();
    Ok(pairs)
}

type Range = (usize, usize);

/// The (probe range, indexed range) of every key both lists hold.
fn key_groups(
    probes: &[usize],
    indexed: &[usize],
    code: impl Fn(usize) -> u64,
) -> Vec<(Range, Range)> {
    let mut groups = Vec::new();
    let (mut p, mut m) = (0, 0);
    while p < probes.len() && m < indexed.len() {
        let (cp, cm) = (code(probes[p]), code(indexed[m]));
        if cp < cm {
            p += 1;
        } else if cm < cp {
            m += 1;
        } else {
            let p_end = p + probes[p..].iter().take_while(|&&i| code(i) == cp).count();
            let m_end = m + indexed[m..].iter().take_while(|&&i| code(i) == cp).count();
            groups.push(((p, p_end), (m, m_end)));
            (p, m) = (p_end, m_end);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::search_pairs;
    use crate::pool::run_in_pool;

    fn planted(n: usize, copies: usize, width: usize, flips: u32, seed: u64) -> Vec<u8> {
        let mut x = seed;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let mut data: Vec<u8> = (0..n * width).map(|_| next() as u8).collect();
        for c in 0..copies {
            let src = (c * 7) % n;
            let mut h = data[src * width..(src + 1) * width].to_vec();
            for _ in 0..(next() as u32 % (flips + 1)) {
                let bit = next() as usize % (width * 8);
                h[bit / 8] ^= 1 << (bit % 8);
            }
            data.extend(h);
        }
        data
    }

    /// Entries of every shard, verified shard by shard, as the engines do.
    fn sharded(
        data: &[u8],
        width: usize,
        radius: i64,
        slot_bits: u32,
        index_min: u64,
    ) -> Vec<IdPair> {
        let hashes = ByteHashes::new(width, data).unwrap();
        let shards = 5;
        let e = slot_entries(&hashes, radius, shards, slot_bits, Role::Both).unwrap();
        let mut all = Vec::new();
        for k in 0..shards as i32 {
            let rows: Vec<usize> = (0..e.shard.len()).filter(|&i| e.shard[i] == k).collect();
            let pick = |v: &Vec<i64>| rows.iter().map(|&i| v[i]).collect::<Vec<_>>();
            let slot: Vec<i16> = rows.iter().map(|&i| e.slot[i]).collect();
            let role: Vec<i8> = rows.iter().map(|&i| e.role[i]).collect();
            let id: Vec<i64> = rows.iter().map(|&i| i64::from(e.record[i])).collect();
            let bytes: Vec<u8> = rows
                .iter()
                .flat_map(|&i| hashes.get(e.record[i] as usize).to_vec())
                .collect();
            let shard = ShardEntries {
                slot: &slot,
                key: &pick(&e.key),
                role: &role,
                id: &id,
                hashes: ByteHashes::new(width, &bytes).unwrap(),
            };
            all.extend(verify_entries(&shard, radius, slot_bits, true, index_min).unwrap());
        }
        all.sort_unstable();
        all
    }

    #[test]
    fn shards_together_equal_the_single_machine_search() {
        let data = planted(400, 120, 32, 40, 3);
        let set = HashSet::from_bytes(&data, 32).unwrap();
        for (radius, slot_bits) in [(0, 16), (15, 16), (31, 16), (31, 8), (40, 8), (15, 32)] {
            let expected: Vec<IdPair> = run_in_pool(Some(2), || search_pairs(&set, radius as u32))
                .into_iter()
                .map(|p| (i64::from(p.a), i64::from(p.b), p.distance))
                .collect();
            for index_min in [1, u64::MAX] {
                let got = run_in_pool(Some(2), || sharded(&data, 32, radius, slot_bits, index_min));
                assert_eq!(got, expected, "radius {radius}, {slot_bits}-bit slots");
            }
        }
    }

    #[test]
    fn query_roles_and_bad_arguments() {
        let data = planted(10, 0, 8, 0, 1);
        let hashes = ByteHashes::new(8, &data).unwrap();
        let index = slot_entries(&hashes, 4, 3, 16, Role::Index).unwrap();
        assert_eq!(index.key.len(), 10 * 4);
        assert!(index.role.iter().all(|&r| r == INDEXED));
        let probe = slot_entries(&hashes, 4, 3, 16, Role::Probe).unwrap();
        assert_eq!(probe.key.len(), 10 * 4 * 17);
        assert!(probe.role.iter().all(|&r| r == PROBE));
        assert!(slot_entries(&hashes, 8, 0, 16, Role::Both).is_err());
        assert!(Role::from_name("all").is_err());
        assert!(ByteHashes::new(8, &data[..9]).is_err());
        assert_eq!(
            hashes.slot(0, 0, 16),
            u64::from(u16::from_be_bytes([data[0], data[1]]))
        );
    }
}
