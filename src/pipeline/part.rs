//! One unit of output being written, as the run loop sees it: the sink's writer and the
//! schema of its rows (a batch of another schema starts a new part).

use crate::BatchWriter;
use arrow_schema::SchemaRef;

pub(super) struct OpenPart {
    pub(super) writer: Box<dyn BatchWriter>,
    /// The rows' schema (`None` on the pre-encoded path).
    pub(super) schema: Option<SchemaRef>,
}
