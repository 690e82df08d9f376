package controller

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/batchrun"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/egress"
	"github.com/llmquota/llmquota/internal/journal"
	"github.com/llmquota/llmquota/internal/results"
	"github.com/llmquota/llmquota/internal/testbed/apiserver"
)

const (
	timeout  = 30 * time.Second
	interval = 100 * time.Millisecond
	// stateNamespace is the manager's own namespace in these specs.
	stateNamespace = "llmquota-system"
)

var (
	testEnv     *envtest.Environment
	cfg         *rest.Config
	k8sClient   client.Client
	stopManager func()
	// suiteRegistry is the dispatcher registry of the suite's manager
	// (startManager), the one that runs between specs.
	suiteRegistry atomic.Pointer[dispatch.Registry]
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controller suite")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	Expect(llmv1.AddToScheme(scheme.Scheme)).To(Succeed())
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred(), "start envtest: run through `make test`, which builds the API server and sets KUBEBUILDER_ASSETS")
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme.Scheme})
	Expect(err).NotTo(HaveOccurred())
	// The spec rules a user's cluster enforces (config/policy), so that
	// the manager is tested against the API server it meets.
	Expect(apiserver.InstallPolicies(context.Background(), k8sClient, apiserver.PolicyDir())).To(Succeed())
	Expect(k8sClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: stateNamespace}})).To(Succeed())
	stopManager = startManager()
})

var _ = AfterSuite(func() {
	if stopManager != nil {
		stopManager()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// startManager runs the suite's manager with both reconcilers, as
// cmd/manager does, and returns a function that stops it and waits until
// it has. Its registry is the one sentAllItCould reads.
func startManager() func() {
	stop, registry := runManager(ctrl.Options{})
	suiteRegistry.Store(registry)
	return stop
}

// startElectedManager runs a manager that competes for leadership, as the
// replicas of a Deployment do, releasing the lease when stopped.
func startElectedManager() func() {
	return startManagerWith(ctrl.Options{
		LeaderElection: true, LeaderElectionID: "manager.llmquota.dev", LeaderElectionNamespace: "default",
		LeaderElectionReleaseOnCancel: true,
	})
}

// startManagerWith runs a further manager, beside or instead of the
// suite's (a spec's own, with options of its own): its registry is not
// the suite's, so a spec that started one and stopped it leaves
// sentAllItCould reading the suite's manager, not the stopped one.
func startManagerWith(opts ctrl.Options) func() {
	stop, _ := runManager(opts)
	return stop
}

func runManager(opts ctrl.Options) (stop func(), registry *dispatch.Registry) {
	opts.Scheme = scheme.Scheme
	opts.Metrics = metricsserver.Options{BindAddress: "0"}
	opts.HealthProbeBindAddress = "0"
	opts.Controller = ctrlConfigSkipNameValidation()
	opts.Cache = CacheOptions(nil, nil)
	mgr, err := ctrl.NewManager(cfg, opts)
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	registry = dispatch.NewRegistry()
	c := countingWrites(mgr.GetClient())
	runs := batchrun.New(clock.RealClock{}, results.FlushPolicy{},
		journal.Options{Reader: mgr.GetAPIReader(), Writer: c, Namespace: stateNamespace})
	Expect(mgr.Add(registry)).To(Succeed())
	Expect(mgr.Add(runs)).To(Succeed())
	recorder := mgr.GetEventRecorder("llmquota-manager")
	Expect((&LLMProviderReconciler{
		Client: c, APIReader: mgr.GetAPIReader(), Recorder: recorder, Clock: clock.RealClock{},
		Registry: registry, StateNamespace: stateNamespace,
	}).SetupWithManager(mgr)).To(Succeed())
	Expect((&InferenceBatchReconciler{
		Client: c, APIReader: mgr.GetAPIReader(), Recorder: recorder, Clock: clock.RealClock{},
		Registry: registry, Runtime: runs, RecheckItems: time.Second, Workers: 4,
		HoldInputBytes: 4 << 10,                       // the object-storage specs' inputs above 4 KiB are streamed
		Egress:         egress.MustParse("127.0.0.1"), // the specs' MinIO, and nothing else
	}).SetupWithManager(mgr)).To(Succeed())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	return func() {
		cancel()
		<-done
	}, registry
}

// newNamespace creates a namespace of its own for one spec.
func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "spec-"}}
	Expect(k8sClient.Create(context.Background(), ns)).To(Succeed())
	return ns.Name
}

// sentAllItCould waits until the provider's dispatcher, in the manager
// started last, has no call in flight after two whole steps of its loop:
// whatever it would send with the state as it is now, it has sent and the
// server has logged. A check that nothing more reached the server then
// proves the dispatcher had its chance, where a Consistently only hopes so.
func sentAllItCould(provider string) {
	GinkgoHelper()
	// Every poll reads the dispatcher afresh and reports why it is not done
	// yet, so a failure says which of these held (and a dispatcher
	// replaced meanwhile is not waited on for ever).
	Eventually(func(g Gomega) {
		d := suiteRegistry.Load().Get(provider)
		g.Expect(d).NotTo(BeNil(), "no dispatcher runs for %s", provider)
		g.Expect(d.Quota().InFlight).To(BeZero(), "calls in flight before the wake")
		for range 2 { // the first may be a step that began before
			n := d.Steps()
			d.Wake()
			g.Eventually(d.Steps, 5*time.Second, 10*time.Millisecond).Should(BeNumerically(">", n), "the loop made no step in 5s after a wake")
		}
		g.Expect(d.Quota().InFlight).To(BeZero(), "calls in flight after two steps")
		g.Expect(suiteRegistry.Load().Get(provider)).To(BeIdenticalTo(d), "the dispatcher was replaced meanwhile")
	}, timeout, interval).Should(Succeed(), "the dispatcher of %s still sending", provider)
}
