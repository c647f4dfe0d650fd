//! The pigeonhole rule behind every multi-index search, single-machine
//! ([`super::mih`]) and sharded ([`super::sharded`]) alike.
//!
//! A hash of `m` slots within Hamming distance `r` of another agrees with it
//! to within `t = r / m` bits on at least one slot (otherwise every slot
//! differs by `t + 1` or more, `m * (t + 1) > r` bits in all). So probing
//! each slot for every value within `t` bits finds every pair, and reporting
//! a pair only from the *first* slot within `t` bits reports it exactly once.

use crate::error::CoreError;

/// More probes than this per slot and a sharded join would flood its shards.
pub const MAX_MASKS: u64 = 1_000_000;

/// How a radius search over `slots` slots of `slot_bits` bits probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotPlan {
    pub slot_bits: u32,
    pub slots: usize,
    /// Bits a slot may differ by for the pair to be found in that slot.
    pub t: u32,
}

impl SlotPlan {
    /// The plan for `bits`-bit hashes cut into `slot_bits`-bit slots.
    pub fn new(radius: i64, bits: u32, slot_bits: u32) -> Result<SlotPlan, CoreError> {
        if !matches!(slot_bits, 8 | 16 | 32) {
            return Err(CoreError::InvalidArgument(
                "slot_bits must be 8, 16 or 32".into(),
            ));
        }
        if bits == 0 || bits % slot_bits != 0 {
            return Err(CoreError::InvalidArgument(format!(
                "{bits}-bit hashes do not split into {slot_bits}-bit slots"
            )));
        }
        if radius < 0 {
            return Err(CoreError::InvalidArgument(
                "radius must be non-negative".into(),
            ));
        }
        let slots = (bits / slot_bits) as usize;
        let t = (radius as u64 / slots as u64).min(u64::from(u32::MAX)) as u32;
        Ok(SlotPlan {
            slot_bits,
            slots,
            t,
        })
    }

    /// The single-machine index's plan: 16-bit slots of 64-bit words.
    pub fn sixteen(words: usize, radius: u32) -> SlotPlan {
        let slots = (words * 4).max(1);
        SlotPlan {
            slot_bits: 16,
            slots,
            t: radius / slots as u32,
        }
    }

    /// Whether the pair belongs to slot `s`: no earlier slot is within `t`
    /// bits. `differing(e)` is the number of bits slot `e` differs by.
    #[inline(always)]
    pub fn reports_at(&self, s: usize, differing: impl Fn(usize) -> u32) -> bool {
        !(0..s).any(|e| differing(e) <= self.t)
    }

    /// Every probe mask of this plan (see [`probe_masks`]).
    pub fn masks(&self) -> Result<Vec<u64>, CoreError> {
        probe_masks(self.slot_bits, self.t)
    }
}

fn binomial(n: u64, k: u64) -> u64 {
    (0..k).fold(1u64, |acc, i| acc.saturating_mul(n - i) / (i + 1))
}

/// Every `slot_bits`-bit mask with at most `t` bits set: 0 first, then by
/// number of bits, each size in lexicographic order of its bit positions
/// (Python's `itertools.combinations` order, which the sharded index keeps).
pub fn probe_masks(slot_bits: u32, t: u32) -> Result<Vec<u64>, CoreError> {
    if !(1..=64).contains(&slot_bits) {
        return Err(CoreError::InvalidArgument(format!(
            "slots of {slot_bits} bits do not fit in 64-bit masks"
        )));
    }
    let t = t.min(slot_bits);
    let count: u64 = (0..=u64::from(t))
        .map(|k| binomial(u64::from(slot_bits), k))
        .fold(0u64, u64::saturating_add);
    if count > MAX_MASKS {
        return Err(CoreError::InvalidArgument(format!(
            "{count} probes per slot: use smaller slots for this radius"
        )));
    }
    let mut masks = Vec::with_capacity(count as usize);
    masks.push(0);
    for k in 1..=t as usize {
        // Bit positions p[0] < p[1] < ... < p[k-1], advanced like an odometer.
        let mut p: Vec<u32> = (0..k as u32).collect();
        loop {
            masks.push(p.iter().fold(0u64, |m, &b| m | (1u64 << b)));
            let Some(i) = (0..k).rev().find(|&i| p[i] < slot_bits - (k - i) as u32) else {
                break;
            };
            p[i] += 1;
            for j in i + 1..k {
                p[j] = p[j - 1] + 1;
            }
        }
    }
    Ok(masks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_pigeonhole_steps() {
        let plan = |r, bits, sb| SlotPlan::new(r, bits, sb).map(|p| (p.slots, p.t));
        assert_eq!(plan(31, 256, 16), Ok((16, 1)));
        assert_eq!(plan(15, 256, 16), Ok((16, 0)));
        assert_eq!(plan(31, 256, 8), Ok((32, 0)));
        assert!(plan(8, 256, 12).is_err());
        assert!(plan(8, 72, 16).is_err());
        assert!(plan(-1, 64, 16).is_err());
        assert_eq!(
            SlotPlan::sixteen(4, 31),
            SlotPlan::new(31, 256, 16).unwrap()
        );
    }

    #[test]
    fn masks_come_in_combination_order() {
        assert_eq!(probe_masks(16, 0).unwrap(), [0]);
        assert_eq!(probe_masks(16, 1).unwrap().len(), 17);
        assert_eq!(probe_masks(16, 2).unwrap().len(), 137);
        assert_eq!(
            probe_masks(8, 2).unwrap()[..11],
            [0, 1, 2, 4, 8, 16, 32, 64, 128, 3, 5]
        );
        assert_eq!(probe_masks(8, 9).unwrap().len(), 256);
        let all = probe_masks(16, 16).unwrap();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, (0..65_536).collect::<Vec<u64>>());
        assert!(probe_masks(32, 6).is_err());
    }

    #[test]
    fn reported_from_the_first_close_slot_only() {
        let plan = SlotPlan::new(31, 256, 16).unwrap(); // t = 1
        let diffs = [3, 1, 0, 5];
        let found_at: Vec<usize> = (0..4)
            .filter(|&s| diffs[s] <= plan.t && plan.reports_at(s, |e| diffs[e]))
            .collect();
        assert_eq!(found_at, [1]);
    }
}
