//! The final pass over a finished graph: cycles, depth, tree size and leftovers, without
//! recursion.

use crate::error::PickleError;
use crate::value::{Node, NodeId};
use crate::vm::{Machine, Result};

const WHITE: u8 = 0;
const GREY: u8 = 1;
const BLACK: u8 = 2;

impl Machine<'_, '_> {
    /// Checks the graph reachable from `root` and returns its tree size.
    pub(crate) fn validate(&mut self, root: NodeId) -> Result<u64> {
        let n = self.nodes.len();
        let mut color = vec![WHITE; n];
        let mut depth = vec![0u32; n];
        let mut size = vec![0u64; n];
        let mut stack: Vec<(NodeId, bool)> = vec![(root, false)];
        let max_depth = self.limits.max_depth as u64;
        let max_tree = self.limits.max_tree_nodes;
        let mut children: Vec<NodeId> = Vec::new();
        while let Some((id, exiting)) = stack.pop() {
            let i = id.index();
            if exiting {
                let (mut d, mut s) = (0u32, 1u64);
                self.nodes[i].for_each_child(|c| {
                    d = d.max(depth[c.index()]);
                    s = s.saturating_add(size[c.index()]);
                });
                depth[i] = d + 1;
                size[i] = s;
                color[i] = BLACK;
                if u64::from(depth[i]) > max_depth {
                    return Err(PickleError::LimitExceeded {
                        what: "max_depth",
                        value: u64::from(depth[i]),
                        limit: max_depth,
                        offset: self.offsets[i],
                    });
                }
                if s > max_tree {
                    return Err(PickleError::LimitExceeded {
                        what: "max_tree_nodes",
                        value: s,
                        limit: max_tree,
                        offset: self.offsets[i],
                    });
                }
                continue;
            }
            match color[i] {
                BLACK => continue,
                GREY => {
                    return Err(PickleError::Cycle {
                        offset: self.offsets[i],
                    });
                }
                _ => {}
            }
            if matches!(self.nodes[i], Node::ArrayShell) {
                return Err(PickleError::BadArguments {
                    offset: self.offsets[i],
                    opcode: crate::Opcode::Reduce,
                    callee: "numpy._core.multiarray._reconstruct".into(),
                    reason: "ndarray never received its BUILD state".into(),
                });
            }
            color[i] = GREY;
            stack.push((id, true));
            children.clear();
            self.nodes[i].for_each_child(|c| children.push(c));
            for &c in &children {
                match color[c.index()] {
                    GREY => {
                        return Err(PickleError::Cycle {
                            offset: self.offsets[c.index()],
                        });
                    }
                    WHITE => stack.push((c, false)),
                    _ => {}
                }
            }
        }
        Ok(size[root.index()])
    }
}
