//! The final pass over a finished graph: cycles, depth, tree size and leftovers, without
//! recursion.

use crate::error::PickleError;
use crate::value::{Node, NodeId};
use crate::vm::{Machine, Result};

const WHITE: u8 = 0;
const GREY: u8 = 1;
const BLACK: u8 = 2;

/// No parent: the root.
const NO_PARENT: u32 = u32::MAX;

/// Nodes that never refer to other nodes.
fn is_leaf(node: &Node) -> bool {
    !matches!(
        node,
        Node::List(_)
            | Node::Tuple(_)
            | Node::Set(_)
            | Node::FrozenSet(_)
            | Node::Dict(_)
            | Node::Counter(_)
            | Node::Namespace(_)
            | Node::OrderedDict(_)
            | Node::Slice(_)
            | Node::Tensor(_)
            | Node::Object(_)
            | Node::ArrayShell
    )
}

impl Machine<'_, '_> {
    /// Checks the graph reachable from `root` (no cycle, depth and tree size within the limits,
    /// no ndarray left without its state) and returns its tree size.
    ///
    /// One iterative depth-first walk: a node's depth and tree size are accumulated into its
    /// parent when it finishes, and leaves or already-finished (shared) children are
    /// accumulated on the spot, so each edge is looked at once.
    pub(crate) fn validate(&mut self, root: NodeId) -> Result<u64> {
        let n = self.nodes.len();
        let mut color = vec![WHITE; n];
        let mut depth = vec![0u32; n];
        let mut size = vec![0u64; n];
        let max_depth = self.limits.max_depth as u64;
        let max_tree = self.limits.max_tree_nodes;
        // (node, parent, exiting)
        let mut stack: Vec<(NodeId, u32, bool)> = Vec::new();
        let nodes = &self.nodes;
        let offsets = &self.offsets;

        if is_leaf(&nodes[root.index()]) {
            return Ok(1);
        }
        stack.push((root, NO_PARENT, false));
        while let Some((id, parent, exiting)) = stack.pop() {
            let i = id.index();
            if exiting {
                depth[i] += 1;
                color[i] = BLACK;
                if u64::from(depth[i]) > max_depth {
                    return Err(PickleError::LimitExceeded {
                        what: "max_depth",
                        value: u64::from(depth[i]),
                        limit: max_depth,
                        offset: offsets[i],
                    });
                }
                if size[i] > max_tree {
                    return Err(PickleError::LimitExceeded {
                        what: "max_tree_nodes",
                        value: size[i],
                        limit: max_tree,
                        offset: offsets[i],
                    });
                }
                if parent != NO_PARENT {
                    let p = parent as usize;
                    depth[p] = depth[p].max(depth[i]);
                    size[p] = size[p].saturating_add(size[i]);
                }
                continue;
            }
            match color[i] {
                BLACK => {
                    // Reached twice before it finished the first time: accumulate now.
                    if parent != NO_PARENT {
                        let p = parent as usize;
                        depth[p] = depth[p].max(depth[i]);
                        size[p] = size[p].saturating_add(size[i]);
                    }
                    continue;
                }
                GREY => return Err(PickleError::Cycle { offset: offsets[i] }),
                _ => {}
            }
            if matches!(nodes[i], Node::ArrayShell) {
                return Err(PickleError::BadArguments {
                    offset: offsets[i],
                    opcode: crate::Opcode::Reduce,
                    callee: "numpy._core.multiarray._reconstruct".into(),
                    reason: "ndarray never received its BUILD state".into(),
                });
            }
            color[i] = GREY;
            size[i] = 1;
            stack.push((id, parent, true));
            let mut cycle = None;
            let (mut d, mut s) = (0u32, 1u64);
            nodes[i].for_each_child(|c| {
                let ci = c.index();
                match color[ci] {
                    GREY => cycle = Some(ci),
                    BLACK => {
                        d = d.max(depth[ci]);
                        s = s.saturating_add(size[ci]);
                    }
                    _ if is_leaf(&nodes[ci]) => {
                        color[ci] = BLACK;
                        depth[ci] = 1;
                        size[ci] = 1;
                        d = d.max(1);
                        s = s.saturating_add(1);
                    }
                    _ => stack.push((c, id.0, false)),
                }
            });
            if let Some(ci) = cycle {
                return Err(PickleError::Cycle {
                    offset: offsets[ci],
                });
            }
            depth[i] = d;
            size[i] = s;
        }
        Ok(size[root.index()])
    }
}
