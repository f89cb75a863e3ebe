//! A small reproducible random source for the model tests (xorshift64):
//! they need variety, not quality.

/// Numbers below the bound given to each call, from `seed` (not 0).
pub(crate) fn below_from(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    }
}
