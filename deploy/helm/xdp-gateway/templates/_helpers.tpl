{{/* The controller name the agent translates for: ctl/translate/config.py
     DEFAULT_CONTROLLER_NAME (tests/deploy checks they agree). Not a value: the agent
     takes no flag for it, so another name would leave every Gateway unclaimed. */}}
{{- define "xdp-gateway.controllerName" -}}
xdp-gateway.io/gateway-controller
{{- end }}

{{- define "xdp-gateway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{- define "xdp-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "xdp-gateway.labels" -}}
{{ include "xdp-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "xdp-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "xdp-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end }}

{{- define "xdp-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end }}

{{/* Shared with the Envoy container: the agent's run directory holds the ADS socket. */}}
{{- define "xdp-gateway.runDir" -}}
/run/xdp-gateway
{{- end }}
