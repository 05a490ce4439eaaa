// Warnings the CLI prints that many tests see.

/** `vma create` of an archive without qemu-server.conf (qmrestore needs one). */
export const NO_CONF =
  "vma: warning: the archive has no qemu-server.conf, which qmrestore needs: give the VM's config with --vm-config <file>, or --make-config\n";
