//! Shared data and shared queues, kept in the [`crate::Proxy`] the VMs share.

use super::state::{Deferred, HostState};
use crate::types::Status;

impl HostState {
    pub(crate) fn get_shared_data(&self, key: &[u8]) -> Result<(Vec<u8>, u32), Status> {
        self.proxy.lock().get(&self.settings.vm_id, key)
    }

    pub(crate) fn set_shared_data(
        &mut self,
        key: &[u8],
        value: &[u8],
        cas: u32,
    ) -> Result<(), Status> {
        self.proxy.lock().set(&self.settings.vm_id, key, value, cas)
    }

    pub(crate) fn register_queue(&mut self, name: &[u8]) -> Result<u32, Status> {
        let root = self.root_of(self.effective).ok_or(Status::BadArgument)?;
        Ok(self
            .proxy
            .lock()
            .register_queue(&self.settings.vm_id, name, (self.id, root)))
    }

    pub(crate) fn resolve_queue(&self, vm_id: &[u8], name: &[u8]) -> Result<u32, Status> {
        let vm_id = String::from_utf8_lossy(vm_id);
        // An empty vm_id means this VM's, as in Envoy.
        let vm_id = if vm_id.is_empty() {
            self.settings.vm_id.as_str()
        } else {
            &vm_id
        };
        self.proxy.lock().resolve_queue(vm_id, name)
    }

    pub(crate) fn enqueue(&mut self, token: u32, value: &[u8]) -> Result<(), Status> {
        let (owner_vm, owner_root) = {
            let mut proxy = self.proxy.lock();
            let queue = proxy.queue(token)?;
            queue.items.push_back(value.to_vec());
            queue.owner
        };
        if owner_vm == self.id {
            self.deferred.push(Deferred::QueueReady {
                root: owner_root,
                token,
            });
        } else {
            self.proxy.notify_queue(owner_vm, owner_root, token);
        }
        Ok(())
    }

    pub(crate) fn dequeue(&mut self, token: u32) -> Result<Vec<u8>, Status> {
        let mut proxy = self.proxy.lock();
        let queue = proxy.queue(token)?;
        queue.items.pop_front().ok_or(Status::Empty)
    }
}
