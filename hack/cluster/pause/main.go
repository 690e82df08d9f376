// Command pause is the real cluster's sandbox ("pause") container: it holds
// a pod's namespaces and does nothing until told to stop. The test bed
// builds it, because registry.k8s.io cannot be reached here.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
