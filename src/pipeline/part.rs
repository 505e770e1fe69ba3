//! One unit of output being written, as the run loop sees it: the sink's writer and the
//! schema of its rows (a batch of another schema starts a new part), and the slot it
//! fills.

use crate::BatchWriter;
use arrow_schema::SchemaRef;

/// Where a batch goes: its table (`None`: the extractor's stream) and source partition.
pub(super) type Slot = (Option<String>, Option<u32>);

pub(super) struct OpenPart {
    pub(super) writer: Box<dyn BatchWriter>,
    /// The rows' schema (`None` on the pre-encoded path).
    pub(super) schema: Option<SchemaRef>,
}
