//! `ioth_X` for every Berkeley call X. (Filled in by the C ABI work.)
