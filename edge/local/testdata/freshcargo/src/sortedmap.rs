//! SortedMap is an AVL tree: the ledger's index from account to balance, in key order.

use std::cmp::Ordering;

type Link<K, V> = Option<Box<Node<K, V>>>;

#[derive(Debug)]
struct Node<K, V> {
    key: K,
    value: V,
    height: i32,
    left: Link<K, V>,
    right: Link<K, V>,
}

fn height<K, V>(n: &Link<K, V>) -> i32 {
    n.as_ref().map_or(0, |n| n.height)
}

impl<K: Ord, V> Node<K, V> {
    fn fix(&mut self) {
        self.height = 1 + height(&self.left).max(height(&self.right));
    }

    fn balance(&self) -> i32 {
        height(&self.left) - height(&self.right)
    }
}

fn rotate_right<K: Ord, V>(mut n: Box<Node<K, V>>) -> Box<Node<K, V>> {
    let mut l = n.left.take().expect("rotate_right without a left child");
    n.left = l.right.take();
    n.fix();
    l.right = Some(n);
    l.fix();
    l
}

fn rotate_left<K: Ord, V>(mut n: Box<Node<K, V>>) -> Box<Node<K, V>> {
    let mut r = n.right.take().expect("rotate_left without a right child");
    n.right = r.left.take();
    n.fix();
    r.left = Some(n);
    r.fix();
    r
}

fn rebalance<K: Ord, V>(mut n: Box<Node<K, V>>) -> Box<Node<K, V>> {
    n.fix();
    let b = n.balance();
    if b > 1 {
        if n.left.as_ref().unwrap().balance() < 0 {
            n.left = Some(rotate_left(n.left.take().unwrap()));
        }
        return rotate_right(n);
    }
    if b < -1 {
        if n.right.as_ref().unwrap().balance() > 0 {
            n.right = Some(rotate_right(n.right.take().unwrap()));
        }
        return rotate_left(n);
    }
    n
}

fn insert<K: Ord, V>(n: Link<K, V>, key: K, value: V, old: &mut Option<V>) -> Box<Node<K, V>> {
    let Some(mut n) = n else {
        return Box::new(Node { key, value, height: 1, left: None, right: None });
    };
    match key.cmp(&n.key) {
        Ordering::Less => n.left = Some(insert(n.left.take(), key, value, old)),
        Ordering::Greater => n.right = Some(insert(n.right.take(), key, value, old)),
        Ordering::Equal => {
            *old = Some(std::mem::replace(&mut n.value, value));
            return n;
        }
    }
    rebalance(n)
}

/// take_min removes the smallest node of a non-empty tree and returns the rest and it.
fn take_min<K: Ord, V>(mut n: Box<Node<K, V>>) -> (Link<K, V>, Box<Node<K, V>>) {
    match n.left.take() {
        None => (n.right.take(), n),
        Some(l) => {
            let (rest, min) = take_min(l);
            n.left = rest;
            (Some(rebalance(n)), min)
        }
    }
}

fn remove<K: Ord, V>(n: Link<K, V>, key: &K, out: &mut Option<V>) -> Link<K, V> {
    let mut n = n?;
    match key.cmp(&n.key) {
        Ordering::Less => n.left = remove(n.left.take(), key, out),
        Ordering::Greater => n.right = remove(n.right.take(), key, out),
        Ordering::Equal => {
            let (left, right) = (n.left.take(), n.right.take());
            *out = Some(n.value);
            let Some(right) = right else { return left };
            let (rest, mut min) = take_min(right);
            min.left = left;
            min.right = rest;
            return Some(rebalance(min));
        }
    }
    Some(rebalance(n))
}

#[derive(Debug)]
pub struct SortedMap<K, V> {
    root: Link<K, V>,
    len: usize,
}

impl<K: Ord, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap { root: None, len: 0 }
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let mut old = None;
        self.root = Some(insert(self.root.take(), key, value, &mut old));
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let mut out = None;
        self.root = remove(self.root.take(), key, &mut out);
        if out.is_some() {
            self.len -= 1;
        }
        out
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        let mut n = self.root.as_ref();
        while let Some(x) = n {
            n = match key.cmp(&x.key) {
                Ordering::Less => x.left.as_ref(),
                Ordering::Greater => x.right.as_ref(),
                Ordering::Equal => return Some(&x.value),
            };
        }
        None
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let mut n = self.root.as_mut();
        while let Some(x) = n {
            n = match key.cmp(&x.key) {
                Ordering::Less => x.left.as_mut(),
                Ordering::Greater => x.right.as_mut(),
                Ordering::Equal => return Some(&mut x.value),
            };
        }
        None
    }

    /// range calls f for each entry with lo <= key < hi, in order.
    pub fn range(&self, lo: &K, hi: &K, f: &mut dyn FnMut(&K, &V)) {
        fn walk<K: Ord, V>(n: &Link<K, V>, lo: &K, hi: &K, f: &mut dyn FnMut(&K, &V)) {
            let Some(n) = n else { return };
            if &n.key > lo {
                walk(&n.left, lo, hi, f);
            }
            if &n.key >= lo && &n.key < hi {
                f(&n.key, &n.value);
            }
            if &n.key < hi {
                walk(&n.right, lo, hi, f);
            }
        }
        walk(&self.root, lo, hi, f)
    }

    pub fn height(&self) -> i32 {
        height(&self.root)
    }

    /// check verifies the tree's order, heights and balance; tests call it after every change.
    pub fn check(&self) -> Result<(), String> {
        fn walk<K: Ord, V>(n: &Link<K, V>, lo: Option<&K>, hi: Option<&K>) -> Result<(i32, usize), String> {
            let Some(n) = n else { return Ok((0, 0)) };
            if lo.is_some_and(|lo| &n.key <= lo) || hi.is_some_and(|hi| &n.key >= hi) {
                return Err("keys out of order".into());
            }
            let (hl, cl) = walk(&n.left, lo, Some(&n.key))?;
            let (hr, cr) = walk(&n.right, Some(&n.key), hi)?;
            if n.height != 1 + hl.max(hr) {
                return Err("stale height".into());
            }
            if (hl - hr).abs() > 1 {
                return Err(format!("unbalanced: {hl} vs {hr}"));
            }
            Ok((n.height, cl + cr + 1))
        }
        let (_, count) = walk(&self.root, None, None)?;
        if count != self.len {
            return Err(format!("len {} but {} nodes", self.len, count));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_like_btreemap() {
        let mut r = Rng::new(31);
        for round in 0..60 {
            let (mut m, mut model) = (SortedMap::new(), BTreeMap::new());
            let keys = 1 + r.below(500);
            for _ in 0..1_500 {
                let k = r.below(keys);
                match r.below(4) {
                    0 | 1 => assert_eq!(m.insert(k, round), model.insert(k, round)),
                    2 => assert_eq!(m.remove(&k), model.remove(&k)),
                    _ => assert_eq!(m.get(&k), model.get(&k)),
                }
                m.check().unwrap();
            }
            assert_eq!(m.len(), model.len());
            let (lo, hi) = (r.below(keys), r.below(keys));
            let mut got = Vec::new();
            m.range(&lo, &hi, &mut |k, v| got.push((*k, *v)));
            let want: Vec<_> = if lo < hi { model.range(lo..hi).map(|(k, v)| (*k, *v)).collect() } else { vec![] };
            assert_eq!(got, want);
        }
    }

    #[test]
    fn stays_logarithmic_on_sorted_input() {
        let mut m = SortedMap::new();
        for k in 0..100_000u32 {
            m.insert(k, ());
        }
        m.check().unwrap();
        assert!(m.height() <= 25, "height {}", m.height());
        for k in (0..100_000u32).step_by(2) {
            m.remove(&k);
        }
        m.check().unwrap();
        assert_eq!(m.len(), 50_000);
    }
}
