{{/* Common names and labels. */}}
{{- define "llmquota.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "llmquota.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "llmquota.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
llmquota.imageRef is an image reference: repository@digest when a digest
is pinned, else repository:tag (the chart's appVersion by default).
*/}}
{{- define "llmquota.imageRef" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .appVersion }}
{{- end -}}
{{- end -}}

{{- define "llmquota.image" -}}
{{ include "llmquota.imageRef" (dict "image" .Values.image "appVersion" .Chart.AppVersion) }}
{{- end -}}

{{- define "llmquota.gatewayImage" -}}
{{ include "llmquota.imageRef" (dict "image" .Values.gateway.image "appVersion" .Chart.AppVersion) }}
{{- end -}}

{{- define "llmquota.agentImage" -}}
{{ include "llmquota.imageRef" (dict "image" .Values.nodeAgent.image "appVersion" .Chart.AppVersion) }}
{{- end -}}

{{/*
llmquota.priorityClass is a component's pod priorityClassName, when its
values set one. Call with the component's values.
*/}}
{{- define "llmquota.priorityClass" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{- define "llmquota.managerName" -}}{{ include "llmquota.fullname" . }}-manager{{- end -}}
{{- define "llmquota.agentName" -}}{{ include "llmquota.fullname" . }}-node-agent{{- end -}}
{{- define "llmquota.gatewayName" -}}{{ include "llmquota.fullname" . }}-gateway{{- end -}}

{{/*
llmquota.egress renders the egress rules shared by the manager and the
gateway (networkPolicy.egress): DNS, the API server, public addresses on
443, and the extra rules as written.
*/}}
{{- define "llmquota.egress" -}}
- ports:
  - {port: 53, protocol: UDP}
  - {port: 53, protocol: TCP}
{{- with .Values.networkPolicy.egress.apiServerCIDRs }}
- to:
  {{- range . }}
  - ipBlock: {cidr: {{ . }}}
  {{- end }}
  ports:
  {{- range $.Values.networkPolicy.egress.apiServerPorts }}
  - {port: {{ . }}, protocol: TCP}
  {{- end }}
{{- end }}
- to:
  - ipBlock:
      cidr: 0.0.0.0/0
      except: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, 169.254.0.0/16, 127.0.0.0/8]
  - ipBlock:
      cidr: ::/0
      except: ["fc00::/7", "fe80::/10", "::1/128"]
  ports:
  - {port: 443, protocol: TCP}
{{- with .Values.networkPolicy.egress.extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
llmquota.secretNamespaces is where the manager and the gateway read
provider Secrets, comma-separated: manager.secretNamespaces, or the
release's namespace when it is empty; nothing (cluster-wide) only with
manager.secretsClusterWide.
*/}}
{{- define "llmquota.secretNamespaces" -}}
{{- if not .Values.manager.secretsClusterWide -}}
{{- join "," (default (list .Release.Namespace) .Values.manager.secretNamespaces) -}}
{{- end -}}
{{- end -}}
