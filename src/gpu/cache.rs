//! The forward cache of a batch, as the numerical gradient's kernels read it: one buffer of
//! 4-byte words, a header and a layer table (where each part starts), then the labels, a_l per
//! layer, z_l per hidden layer and the probabilities. The per-parameter kernels find the parts
//! through the header, the memo kernels and the chunked plan through `CacheLayout`.

use super::launch::word;
use crate::error::Result;
use crate::model::MlpSpec;

/// The cache's header words: where the labels and the probabilities start.
pub(crate) const HEADER_LABELS_AT: usize = 0;
pub(crate) const HEADER_PROBS_AT: usize = 1;
/// The layer table: LAYER_WORDS words per layer from LAYER_TABLE_AT, the fields below.
pub(crate) const LAYER_TABLE_AT: usize = 8;
pub(crate) const LAYER_WORDS: usize = 8;
pub(crate) const LAYER_FAN_IN: usize = 0;
pub(crate) const LAYER_FAN_OUT: usize = 1;
/// Where W_l and b_l start in the flat parameters.
pub(crate) const LAYER_W_AT: usize = 2;
pub(crate) const LAYER_B_AT: usize = 3;
/// Where a_l and (hidden layers) z_l start in the cache.
pub(crate) const LAYER_PRE_AT: usize = 4;
pub(crate) const LAYER_POST_AT: usize = 5;

/// Where each part of the forward cache sits in the `cache` buffer (in 4-byte words).
#[derive(Debug, Clone)]
pub(crate) struct CacheLayout {
    pub(crate) header: Vec<u32>,
    pub(crate) labels_at: usize,
    pub(crate) pre_at: Vec<usize>,
    pub(crate) post_at: Vec<usize>,
    pub(crate) probs_at: usize,
    pub(crate) words: usize,
}

/// The cache layout for `rows` samples of `spec`: header, layer table, labels, a_l, z_l, probs.
pub(crate) fn cache_layout(spec: &MlpSpec, rows: usize) -> Result<CacheLayout> {
    let layers = spec.layers();
    let mut at = LAYER_TABLE_AT + LAYER_WORDS * layers.len();
    let labels_at = at;
    at += rows;
    let mut pre_at = Vec::new();
    for l in &layers {
        pre_at.push(at);
        at += rows * l.fan_out;
    }
    let mut post_at = Vec::new();
    for &h in &spec.hidden {
        post_at.push(at);
        at += rows * h;
    }
    let probs_at = at;
    at += rows * spec.classes;
    let mut header = vec![0u32; labels_at];
    header[HEADER_LABELS_AT] = word("cache offset", labels_at)?;
    header[HEADER_PROBS_AT] = word("cache offset", probs_at)?;
    for (l, layer) in layers.iter().enumerate() {
        let from = LAYER_TABLE_AT + LAYER_WORDS * l;
        let t = &mut header[from..from + LAYER_WORDS];
        t[LAYER_FAN_IN] = word("fan_in", layer.fan_in)?;
        t[LAYER_FAN_OUT] = word("fan_out", layer.fan_out)?;
        t[LAYER_W_AT] = word("weight offset", layer.w_offset)?;
        t[LAYER_B_AT] = word("bias offset", layer.b_offset)?;
        t[LAYER_PRE_AT] = word("cache offset", pre_at[l])?;
        t[LAYER_POST_AT] = match post_at.get(l) {
            Some(&p) => word("cache offset", p)?,
            None => 0,
        };
    }
    Ok(CacheLayout {
        header,
        labels_at,
        pre_at,
        post_at,
        probs_at,
        words: at,
    })
}
