//! Placeholder: search helpers come next.
/// SORT keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortKeys;
/// THREAD keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadKeys;
