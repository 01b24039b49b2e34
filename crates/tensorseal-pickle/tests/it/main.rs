//! Integration tests of the pickle interpreter: CPython fixtures, torch-written pickles, hostile
//! inputs, properties and the fuzz corpus.

mod corpus;
mod corpus_hostile;
mod fixtures;
mod hostile;
mod keyed;
mod props;
mod tree;
mod typed;
