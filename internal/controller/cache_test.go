package controller

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/ollamapod"
)

// typicalPod is a pod as the API server serves it: managed fields, a spec
// with env, volumes and probes, and a kubelet's status.
func typicalPod() *corev1.Pod {
	now := metav1.Now()
	c := corev1.Container{Name: "app", Image: "registry.example.com/team/app:v1.2.3",
		Args: []string{"--config=/etc/app/config.yaml", "--log-level=info"},
		Env:  []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}, {Name: "MODE", Value: "production"}},
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}},
		VolumeMounts:   []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app"}, {Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz"}}, PeriodSeconds: 10},
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app-7d9c8b6f5-x2k8p", Namespace: "team", UID: "0f8e7c1a-3b2d-4e5f-9a8b-7c6d5e4f3a2b", ResourceVersion: "123456",
			Labels:          map[string]string{"app": "app", "pod-template-hash": "7d9c8b6f5"},
			Annotations:     map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-11-26T09:00:00Z"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "app-7d9c8b6f5", UID: "1a2b"}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1",
				FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:args":{},"f:env":{},"f:image":{},"f:resources":{}}}}}`)},
				{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, Subresource: "status", FieldsType: "FieldsV1",
					FieldsV1: metav1.NewFieldsV1(`{"f:status":{"f:conditions":{},"f:containerStatuses":{},"f:hostIP":{},"f:phase":{},"f:podIP":{},"f:podIPs":{},"f:startTime":{}}}`)}},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{c}, NodeName: "node-17", ServiceAccountName: "app",
			Volumes:     []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}}}},
			Tolerations: []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.17.23", HostIP: "10.0.0.17", StartTime: &now,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}, {Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, Image: c.Image, ImageID: "registry.example.com/team/app@sha256:4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a",
				ContainerID: "containerd://5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}},
	}
}

// TestSlimPodKeepsWhatPoolsNeed: everything the pool status and the
// dispatcher read survives the transform; the rest goes.
func TestSlimPodKeepsWhatPoolsNeed(t *testing.T) {
	pod := typicalPod()
	pod.Annotations[llmv1.AnnotationOllamaEndpoint] = "http://node-17:31434"
	pod.Annotations[llmv1.AnnotationEndpointReport] = `{"model":"tiny"}`
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: llmv1.PodConditionModelWarm, Status: corev1.ConditionTrue, Message: "warm"})
	obj, err := SlimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	slim := obj.(*corev1.Pod)
	o := &llmv1.OllamaSpec{Port: 11434}
	if ollamapod.Endpoint(slim, o) != ollamapod.Endpoint(pod, o) || !ollamapod.IsWarm(slim) || ollamapod.WarmCondition(slim).Message != "warm" ||
		slim.Labels["app"] != "app" || slim.Spec.NodeName != "node-17" || slim.Annotations[llmv1.AnnotationEndpointReport] == "" ||
		slim.Name != pod.Name || slim.Namespace != pod.Namespace || slim.ResourceVersion != pod.ResourceVersion {
		t.Fatalf("slim pod lost what pools need: %+v", slim)
	}
	if len(slim.ManagedFields) != 0 || len(slim.Spec.Containers) != 0 || len(slim.Status.ContainerStatuses) != 0 ||
		slim.Annotations["kubectl.kubernetes.io/restartedAt"] != "" || len(slim.Status.Conditions) != 1 {
		t.Fatalf("slim pod kept what pools do not need: %+v", slim)
	}
	if same, _ := SlimPod(&corev1.Secret{}); same == nil {
		t.Fatal("other objects pass through")
	}
}

// BenchmarkPodCacheFootprint compares what one cached pod weighs, as JSON
// (a proxy for the decoded object's memory), without and with SlimPod.
func BenchmarkPodCacheFootprint(b *testing.B) {
	pod := typicalPod()
	full, _ := json.Marshal(pod)
	var slimBytes int
	for b.Loop() {
		obj, _ := SlimPod(pod.DeepCopy())
		data, _ := json.Marshal(obj)
		slimBytes = len(data)
	}
	b.ReportMetric(float64(len(full)), "full-bytes/pod")
	b.ReportMetric(float64(slimBytes), "slim-bytes/pod")
}

// TestSlimBatchKeepsItemsUntilAdmitted: a new batch keeps its inline items
// in the cache for its admission; an admitted one drops them, and every
// batch drops managedFields and the last-applied copy of its items.
func TestSlimBatchKeepsItemsUntilAdmitted(t *testing.T) {
	batch := func(admitted bool) *llmv1.InferenceBatch {
		b := &llmv1.InferenceBatch{ObjectMeta: metav1.ObjectMeta{Name: "b", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			Annotations: map[string]string{lastApplied: `{"spec":{"items":[]}}`, "team": "news"}},
			Spec: llmv1.InferenceBatchSpec{Items: []llmv1.Item{{ID: "a", Prompt: "p"}}}}
		if admitted {
			b.Status.StartTime = &metav1.Time{}
		}
		return b
	}
	for _, admitted := range []bool{false, true} {
		out, err := SlimBatch(batch(admitted))
		if err != nil {
			t.Fatal(err)
		}
		b := out.(*llmv1.InferenceBatch)
		if (len(b.Spec.Items) == 0) != admitted {
			t.Errorf("admitted %v: %d items cached", admitted, len(b.Spec.Items))
		}
		if b.ManagedFields != nil || b.Annotations[lastApplied] != "" || b.Annotations["team"] != "news" {
			t.Errorf("admitted %v: managedFields %v, annotations %v", admitted, b.ManagedFields, b.Annotations)
		}
	}
}
