//! Dedup decisions: union-find over matched pairs, one keeper per cluster.

use super::pair::Pair;

/// Cluster of each record: the smallest record index in its component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clusters {
    pub cluster: Vec<u32>,
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        parent[x as usize] = parent[parent[x as usize] as usize];
        x = parent[x as usize];
    }
    x
}

/// Connected components of the match graph over `n` records.
pub fn clusters(n: usize, pairs: &[Pair]) -> Clusters {
    let mut parent: Vec<u32> = (0..n as u32).collect();
    for p in pairs {
        let (a, b) = (find(&mut parent, p.a), find(&mut parent, p.b));
        if a != b {
            // The smaller index becomes the root: deterministic cluster ids.
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            parent[hi as usize] = lo;
        }
    }
    let cluster = (0..n as u32).map(|i| find(&mut parent, i)).collect();
    Clusters { cluster }
}

/// The keeper of every cluster: the record with the highest `rank` (for
/// instance width x height), ties going to the earliest record. Returns, per
/// record, `None` for keepers and `Some(keeper)` for duplicates.
pub fn keepers(clusters: &Clusters, rank: &[u64]) -> Vec<Option<u32>> {
    let n = clusters.cluster.len();
    let mut best: Vec<u32> = (0..n as u32).collect();
    for i in 0..n {
        let root = clusters.cluster[i] as usize;
        let current = best[root] as usize;
        if rank[i] > rank[current] || (rank[i] == rank[current] && i < current) {
            best[root] = i as u32;
        }
    }
    (0..n)
        .map(|i| {
            let keeper = best[clusters.cluster[i] as usize];
            (keeper != i as u32).then_some(keeper)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_and_keepers() {
        let pairs = [
            Pair {
                a: 0,
                b: 3,
                distance: 1,
            },
            Pair {
                a: 3,
                b: 4,
                distance: 2,
            },
            Pair {
                a: 1,
                b: 2,
                distance: 0,
            },
        ];
        let c = clusters(6, &pairs);
        assert_eq!(c.cluster, vec![0, 1, 1, 0, 0, 5]);
        // Record 4 is the largest of {0, 3, 4}; 1 and 2 tie, the earlier wins.
        let k = keepers(&c, &[10, 5, 5, 10, 99, 1]);
        assert_eq!(k, vec![Some(4), None, Some(1), Some(4), None, None]);
    }
}
