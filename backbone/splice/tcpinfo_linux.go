package splice

import "golang.org/x/sys/unix"

// readTCPInfo records the TCP side's segment counts when asked to.
func (j *joint) readTCPInfo() {
	if !j.opts.TCPInfo || j.rc == nil {
		return
	}
	_ = j.rc.Control(func(fd uintptr) {
		if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			j.segsIn, j.segsOut = uint64(ti.Segs_in), uint64(ti.Segs_out)
		}
	})
}
