//! The verdict head: a small linear classifier over the model's hidden states (issue 21). The
//! model reads the situation; the head says whether what it read objects to the proposal
//! (class 1, `reject`) or not (class 0; the numbers then decide between approve and adjust,
//! and class 2 is unused). Its weights are produced by `benches/model.rs --train` from the
//! training scenarios (`benches/model/train/`) and the dev set, never from the evaluation's
//! held-out half, and ship inside the binary (`assets/reviewer-head.json`). They fit one
//! network: the head keeps the features of a fixed probe text, and a model whose probe
//! features differ gets no head (the reviewer falls back to calibrated scoring). Pure
//! arithmetic; the features come from `verdict`.

use serde::{Deserialize, Serialize};

/// The classes, in the order of the head's rows (the verdict head uses the first two).
pub const CLASSES: [&str; 3] = ["approve", "reject", "adjust"];

/// The head as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// What the features are (the check of a head against the code that uses it).
    pub features: String,
    /// The model's features of [`super::prompt::CONTENT_FREE`]: the head fits a model whose
    /// probe features are within [`PROBE_MATCH`] of these (cosine).
    pub probe: Vec<f32>,
    /// Per-feature mean and scale, applied before the weights.
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    /// One row per class of [`CLASSES`].
    pub weights: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
    /// How it was trained: scenarios, regularisation, training agreement.
    pub trained: String,
}

/// Least cosine similarity between a model's probe features and the head's.
pub const PROBE_MATCH: f32 = 0.995;

/// The head shipped in the binary, if it was trained.
pub fn shipped() -> Option<Head> {
    serde_json::from_str(include_str!("../../../assets/reviewer-head.json")).ok()
}

/// Cosine similarity of two vectors (0 when either is zero or their lengths differ).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

impl Head {
    /// Whether this head fits a model whose probe features are `probe`.
    pub fn fits(&self, features: &str, probe: &[f32]) -> bool {
        self.features == features && cosine(&self.probe, probe) >= PROBE_MATCH
    }

    /// How strongly `x` objects: the logit of `reject` less that of `approve` (what ranks the
    /// lines of an objection's reason).
    pub fn margin(&self, x: &[f32]) -> f32 {
        let mut m = self.bias[1] - self.bias[0];
        for (((v, mu), s), (r, a)) in x
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .zip(self.weights[1].iter().zip(&self.weights[0]))
        {
            m += (r - a) * (v - mu) / s;
        }
        m
    }

    /// Log-probabilities of the classes for `x`, over those `allowed` (others get −∞).
    pub fn log_probs(&self, x: &[f32], allowed: &[bool; 3]) -> [f32; 3] {
        let z: Vec<f32> = x
            .iter()
            .zip(self.mean.iter().zip(&self.scale))
            .map(|(v, (m, s))| (v - m) / s)
            .collect();
        let mut logits = [f32::NEG_INFINITY; 3];
        for c in 0..3 {
            if allowed[c] {
                logits[c] = self.bias[c]
                    + self.weights[c]
                        .iter()
                        .zip(&z)
                        .map(|(w, v)| w * v)
                        .sum::<f32>();
            }
        }
        log_softmax3(logits)
    }
}

fn log_softmax3(l: [f32; 3]) -> [f32; 3] {
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = l.iter().map(|v| (v - max).exp()).sum();
    let lse = max + sum.ln();
    [l[0] - lse, l[1] - lse, l[2] - lse]
}

/// Train a head on `xs` (features) and `ys` (class indices), each example counting as many
/// times as its weight in `ws`, by gradient descent on the L2-regularised cross-entropy,
/// classes weighted by their inverse (weighted) frequency. Deterministic.
pub fn train(
    xs: &[Vec<f32>],
    ys: &[usize],
    ws: &[f32],
    l2: f32,
    epochs: usize,
    features: &str,
    probe: Vec<f32>,
) -> Head {
    let d = xs.first().map_or(0, Vec::len);
    let n = xs.len().max(1) as f32;
    let mut mean = vec![0f32; d];
    for x in xs {
        for (m, v) in mean.iter_mut().zip(x) {
            *m += v / n;
        }
    }
    let mut scale = vec![0f32; d];
    for x in xs {
        for ((s, v), m) in scale.iter_mut().zip(x).zip(&mean) {
            *s += (v - m) * (v - m) / n;
        }
    }
    for s in &mut scale {
        *s = s.sqrt().max(1e-4);
    }
    let z: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| {
            x.iter()
                .zip(mean.iter().zip(&scale))
                .map(|(v, (m, s))| (v - m) / s)
                .collect()
        })
        .collect();
    assert_eq!(ws.len(), ys.len(), "one weight per example");
    let total: f32 = ws.iter().sum::<f32>().max(1e-6);
    let mut count = [0f32; 3];
    for (y, w) in ys.iter().zip(ws) {
        count[*y] += w;
    }
    let class_weight: Vec<f32> = count
        .iter()
        .map(|c| if *c > 0.0 { total / (3.0 * c) } else { 0.0 })
        .collect();
    let mut w = vec![vec![0f32; d]; 3];
    let mut b = vec![0f32; 3];
    let lr = 0.05;
    for _ in 0..epochs {
        let mut gw = vec![vec![0f32; d]; 3];
        let mut gb = [0f32; 3];
        for ((x, y), weight) in z.iter().zip(ys).zip(ws) {
            let mut logits = [0f32; 3];
            for c in 0..3 {
                logits[c] = b[c] + w[c].iter().zip(x).map(|(a, v)| a * v).sum::<f32>();
            }
            let lp = log_softmax3(logits);
            let cw = class_weight[*y] * weight;
            for c in 0..3 {
                let g = (lp[c].exp() - f32::from(c == *y)) * cw;
                gb[c] += g;
                for (gi, v) in gw[c].iter_mut().zip(x) {
                    *gi += g * v;
                }
            }
        }
        for c in 0..3 {
            b[c] -= lr * gb[c] / total;
            for (wi, gi) in w[c].iter_mut().zip(&gw[c]) {
                *wi -= lr * (gi / total + l2 * *wi);
            }
        }
    }
    Head {
        features: features.into(),
        probe,
        mean,
        scale,
        weights: w,
        bias: b,
        trained: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_learns_a_separable_rule_and_refuses_another_model() {
        // Class by the sign of feature 0, with noise in feature 1.
        let xs: Vec<Vec<f32>> = (0..60)
            .map(|i| {
                vec![
                    if i % 3 == 0 { 1.0 } else { -1.0 } * (1.0 + (i % 5) as f32 / 10.0),
                    (i % 7) as f32,
                ]
            })
            .collect();
        let ys: Vec<usize> = (0..60).map(|i| usize::from(i % 3 != 0)).collect();
        let h = train(&xs, &ys, &[1.0; 60], 1e-3, 300, "test", vec![1.0, 0.0]);
        let all = [true, true, true];
        for (x, y) in xs.iter().zip(&ys) {
            let lp = h.log_probs(x, &all);
            let best = (0..3).max_by(|a, b| lp[*a].total_cmp(&lp[*b])).unwrap();
            assert_eq!(best, *y, "{x:?}: {lp:?}");
        }
        let only = h.log_probs(&xs[0], &[true, true, false]);
        assert_eq!(
            only[2],
            f32::NEG_INFINITY,
            "a class not allowed is never chosen"
        );
        // The margin is the reject logit less the approve one, and that of a mean is the
        // mean of the margins.
        let two = [true, true, false];
        for x in &xs[..4] {
            let lp = h.log_probs(x, &two);
            assert!((h.margin(x) - (lp[1] - lp[0])).abs() < 1e-4);
        }
        let mid: Vec<f32> = xs[0]
            .iter()
            .zip(&xs[1])
            .map(|(a, b)| (a + b) / 2.0)
            .collect();
        let avg = (h.margin(&xs[0]) + h.margin(&xs[1])) / 2.0;
        assert!((h.margin(&mid) - avg).abs() < 1e-4);
        assert!(h.fits("test", &[2.0, 0.0]), "the same direction fits");
        assert!(!h.fits("test", &[0.0, 1.0]), "another model does not");
        assert!(!h.fits("other", &[1.0, 0.0]), "other features do not");
    }

    #[test]
    fn a_heavier_example_outweighs_a_lighter_one_that_says_otherwise() {
        // Two examples of each class at the same point, and one more of each apart: where
        // they coincide, the class whose examples weigh more wins.
        let xs = vec![vec![0.0], vec![0.0], vec![1.0], vec![-1.0]];
        let ys = vec![0, 1, 0, 1];
        for (ws, want) in [([1.0, 3.0, 1.0, 1.0], 1), ([3.0, 1.0, 1.0, 1.0], 0)] {
            let h = train(&xs, &ys, &ws, 1e-3, 300, "test", vec![1.0]);
            let lp = h.log_probs(&[0.0], &[true, true, false]);
            let got = usize::from(lp[1] > lp[0]);
            assert_eq!(got, want, "weights {ws:?}: {lp:?}");
        }
    }
}
