package reconciler

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/agent/gpu"
	"github.com/llmquota/llmquota/internal/agent/ollama"
	"github.com/llmquota/llmquota/internal/testbed/ollamaserver"
)

const (
	timeout  = 60 * time.Second
	interval = 100 * time.Millisecond
	gib      = 1 << 30

	gpuNode = "gpu-node-1" // its agent reads go-nvml's DGX H100 mock
	cpuNode = "cpu-node-1" // its agent finds no NVML
)

var (
	testEnv   *envtest.Environment
	k8sClient client.Client
	ollamaSrv *ollamaserver.Server
	// agentClock is the agents' clock: real time plus a shift the specs
	// move forward to make cleanups due without waiting minutes.
	agentClock = &shiftedClock{}
	// mockGPUUsed is what every mock H100 reports as used memory.
	mockGPUUsed atomic.Uint64
	// mockGPUProcesses are the compute processes device 0 of the mock
	// H100 lists (none unless a spec sets them).
	mockGPUProcesses atomic.Pointer[[]nvml.ProcessInfo]
	// procRoot is the GPU node agent's /proc: a directory the specs write
	// <pid>/cgroup files into, as the kubelet's cgroups would read.
	procRoot string
)

func TestAgent(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Node agent suite")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	Expect(llmv1.AddToScheme(scheme.Scheme)).To(Succeed())
	var err error
	ollamaSrv, err = ollamaserver.StartFromEnv()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(ollamaSrv.Close)

	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred(), "start envtest: run through `make test`, which builds the API server and sets KUBEBUILDER_ASSETS")
	DeferCleanup(func() { Expect(testEnv.Stop()).To(Succeed()) })
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme.Scheme})
	Expect(err).NotTo(HaveOccurred())

	mockGPUUsed.Store(20 * gib)
	procRoot = GinkgoT().TempDir()
	startAgent(cfg, gpuNode, func() (*gpu.Reader, error) { return gpu.Open(h100()) })
	startAgent(cfg, cpuNode, func() (*gpu.Reader, error) {
		s := dgxh100.New()
		s.InitFunc = func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }
		return gpu.Open(s)
	})
})

// pollInterval is how often the suite's agents look at each pod again.
const pollInterval = 300 * time.Millisecond

// startAgent runs an agent for node as cmd/node-agent does, with short
// intervals, until the suite (or the spec that started it) ends.
func startAgent(cfg *rest.Config, node string, open func() (*gpu.Reader, error)) {
	startAgentSampling(cfg, node, open, 100*time.Millisecond)
}

// startAgentSampling is startAgent with the GPUs sampled every gpuInterval.
func startAgentSampling(cfg *rest.Config, node string, open func() (*gpu.Reader, error), gpuInterval time.Duration) {
	skip := true
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache: CacheOptions(node), Controller: config.Controller{SkipNameValidation: &skip},
	})
	Expect(err).NotTo(HaveOccurred())
	r := &PodReconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("llmquota-node-agent"), Clock: agentClock,
		GPU: gpu.NewMonitor(open, ctrl.Log.WithName(node)),
		Options: Options{NodeName: node, PollInterval: pollInterval, GPUInterval: gpuInterval,
			CleanupMinGap: time.Second, WarmupBackoff: 10 * time.Millisecond, ProcRoot: procRoot},
	}
	Expect(r.SetupWithManager(mgr)).To(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	DeferCleanup(func() { cancel(); <-done })
}

// h100 is go-nvml's DGX H100 mock (8 GPUs of 80 GiB); device 0 reports
// mockGPUUsed as used, the others 1 GiB.
func h100() *server.Server {
	s := dgxh100.New()
	for i, nd := range s.Devices {
		d := nd.(*server.Device)
		d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
			used := uint64(gib)
			if i == 0 {
				used = mockGPUUsed.Load()
			}
			return nvml.Memory_v2{Total: 80 * gib, Used: used, Free: 80*gib - used}, nvml.SUCCESS
		}
		d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: 40}, nvml.SUCCESS }
		d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
			if p := mockGPUProcesses.Load(); p != nil && i == 0 {
				return *p, nvml.SUCCESS
			}
			return nil, nvml.SUCCESS
		}
	}
	return s
}

// loadAwareH100 is h100 whose device 0 uses 5 GiB more while model is
// resident in the suite's real Ollama: the memory a warm-up takes.
func loadAwareH100(model string) *server.Server {
	s := h100()
	d := s.Devices[0].(*server.Device)
	d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
		used := uint64(20 * gib)
		if running, err := ollama.New(ollamaSrv.URL, nil).PS(context.Background()); err == nil {
			if _, ok := ollama.Resident(running, model); ok {
				used += 5 * gib
			}
		}
		return nvml.Memory_v2{Total: 80 * gib, Used: used, Free: 80*gib - used}, nvml.SUCCESS
	}
	return s
}

// shiftedClock is the real clock moved forward by Shift.
type shiftedClock struct {
	clock.RealClock
	shift atomic.Int64
}

func (c *shiftedClock) Now() time.Time                  { return time.Now().Add(time.Duration(c.shift.Load())) }
func (c *shiftedClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c *shiftedClock) Shift(d time.Duration)           { c.shift.Add(int64(d)) }
