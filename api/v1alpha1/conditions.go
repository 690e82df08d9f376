package v1alpha1

// Condition types and reasons. Each reason's comment says when it surfaces.
// True, False and Unknown mean what the type's comment says; Unknown always
// means the controller has not yet observed the object.
const (
	// ConditionReady (LLMProvider): True when the provider can serve calls:
	// its credentials and fallback chain resolve. False says why not.
	ConditionReady = "Ready"
	// ConditionRateLimited (both kinds): True while a quota window, the
	// minimum interval, a backoff or a server's Retry-After holds calls back;
	// on a provider the message says until when. On a batch, a hold stays
	// shown until the provider was free of holds for 5 seconds, so a
	// provider at its limit does not flip it with every call, and the
	// message points at the provider's status.nextRequestAt for when.
	ConditionRateLimited = "RateLimited"
	// ConditionDegraded (LLMProvider): True after consecutive failures or
	// while the circuit is open.
	ConditionDegraded = "Degraded"
	// ConditionCostAlert (LLMProvider): True while the cost of the current
	// day or month is above its threshold.
	ConditionCostAlert = "CostAlert"
	// ConditionWarm (LLMProvider, Ollama): True when at least one endpoint is
	// warm; the message says how many of all.
	ConditionWarm = "Warm"

	// ConditionAdmitted (InferenceBatch): True once the items are loaded,
	// filtered and handed to the provider's dispatcher.
	ConditionAdmitted = "Admitted"
	// ConditionBackingOff (InferenceBatch): True while failed calls of this
	// batch wait for their retry.
	ConditionBackingOff = "BackingOff"
	// ConditionProgressing (InferenceBatch): True while items are being sent.
	ConditionProgressing = "Progressing"
	// ConditionComplete (InferenceBatch): True when every item has a stored
	// result and none failed: the batch succeeded. Terminal, like a Job's.
	// kubectl wait --for=condition=Complete waits for it.
	ConditionComplete = "Complete"
	// ConditionFailed (InferenceBatch): True when the batch finished without
	// succeeding: some items failed after their retries (ItemsFailed; every
	// item still has a stored result) or activeDeadlineSeconds passed
	// (DeadlineExceeded). Terminal, like a Job's. A batch that waits (for
	// its provider, its input, a model) is never Failed: Admitted=False says
	// why it waits.
	ConditionFailed = "Failed"
	// ConditionFinished (InferenceBatch): True once the batch is Complete or
	// Failed, with the reason Succeeded, ItemsFailed or DeadlineExceeded, so
	// one kubectl wait --for=condition=Finished covers both outcomes.
	ConditionFinished = "Finished"
	// ConditionSuspended (InferenceBatch): True while spec.suspend is true.
	ConditionSuspended = "Suspended"
)

// Reasons.
const (
	// ReasonConfigured surfaces on Ready=True.
	ReasonConfigured = "Configured"
	// ReasonSecretNotFound surfaces on Ready=False when the credentials
	// Secret does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonKeyNotFound surfaces on Ready=False when the Secret lacks the key
	// or the key is empty.
	ReasonKeyNotFound = "KeyNotFound"
	// ReasonFallbackNotFound surfaces on Ready=False when the fallback
	// provider does not exist.
	ReasonFallbackNotFound = "FallbackNotFound"
	// ReasonFallbackCycle surfaces on Ready=False when following fallbacks
	// comes back to this provider.
	ReasonFallbackCycle = "FallbackCycle"

	// ReasonMinuteWindowFull surfaces on RateLimited=True when the
	// per-minute window is full.
	ReasonMinuteWindowFull = "MinuteWindowFull"
	// ReasonHourWindowFull surfaces on RateLimited=True when the per-hour
	// window is full.
	ReasonHourWindowFull = "HourWindowFull"
	// ReasonDayWindowFull surfaces on RateLimited=True when the per-day
	// window is full.
	ReasonDayWindowFull = "DayWindowFull"
	// ReasonTokenWindowFull surfaces on RateLimited=True when the
	// tokens-per-minute window is full.
	ReasonTokenWindowFull = "TokenWindowFull"
	// ReasonMinInterval surfaces on RateLimited=True while the minimum
	// interval since the last call has not passed.
	ReasonMinInterval = "MinInterval"
	// ReasonBackingOff surfaces on RateLimited=True during failure backoff.
	ReasonBackingOff = "BackingOff"
	// ReasonRetryAfter surfaces on RateLimited=True during a server's Retry-After.
	ReasonRetryAfter = "RetryAfter"
	// ReasonWithinLimits surfaces on RateLimited=False.
	ReasonWithinLimits = "WithinLimits"

	// ReasonDailyThresholdExceeded surfaces on CostAlert=True for the day.
	ReasonDailyThresholdExceeded = "DailyThresholdExceeded"
	// ReasonMonthlyThresholdExceeded surfaces on CostAlert=True for the month.
	ReasonMonthlyThresholdExceeded = "MonthlyThresholdExceeded"

	// ReasonDailyBudgetExhausted surfaces on RateLimited=True (provider and
	// batch) while spec.cost.budgets.daily has no room for the next call's
	// worst-case cost; the message says when the UTC day resets it.
	ReasonDailyBudgetExhausted = "DailyBudgetExhausted"
	// ReasonMonthlyBudgetExhausted is the same for spec.cost.budgets.monthly
	// and the UTC month.
	ReasonMonthlyBudgetExhausted = "MonthlyBudgetExhausted"

	// ReasonNamespaceDailyBudgetExhausted surfaces on a batch's
	// RateLimited=True (and Progressing=False) while its namespace's daily
	// budget on the provider (spec.shares) has no room for the next call's
	// worst-case cost; other namespaces go on. It resets at the next UTC
	// midnight.
	ReasonNamespaceDailyBudgetExhausted = "NamespaceDailyBudgetExhausted"
	// ReasonNamespaceMonthlyBudgetExhausted is the same for the month.
	ReasonNamespaceMonthlyBudgetExhausted = "NamespaceMonthlyBudgetExhausted"
	// ReasonNamespaceLimitReached surfaces on a batch's RateLimited=True
	// (and Progressing=False) while its namespace's own limits on the
	// provider (spec.shares defaultLimits or namespaces[].limits) are
	// full; other namespaces go on. The message names the window and when
	// it frees, or says the namespace waits for one of its calls to end.
	ReasonNamespaceLimitReached = "NamespaceLimitReached"
	// ReasonModelLimitReached is the same for the own limits of the model
	// a batch calls (spec.modelLimits); batches on other models go on.
	ReasonModelLimitReached = "ModelLimitReached"
	// ReasonAuthFailed surfaces on LLMProvider Degraded=True and Ready=False
	// when the provider refused the credentials (HTTP 401/403). New batches
	// wait (Admitted=False ProviderNotReady); it clears when a call
	// succeeds or the Secret changes.
	ReasonAuthFailed = "AuthFailed"
	// ReasonCircuitOpen surfaces on Degraded=True after enough consecutive
	// failures that new items go to the fallback while the backoff holds.
	ReasonCircuitOpen = "CircuitOpen"
	// ReasonConsecutiveFailures surfaces on Degraded=True after several
	// failed calls in a row.
	ReasonConsecutiveFailures = "ConsecutiveFailures"
	// ReasonHealthy surfaces on Degraded=False: recent calls succeed.
	ReasonHealthy = "Healthy"
	// ReasonWithinThreshold surfaces on CostAlert=False.
	ReasonWithinThreshold = "WithinThreshold"
	// ReasonEndpointsWarm surfaces on Warm=True (Ollama pools).
	ReasonEndpointsWarm = "EndpointsWarm"
	// ReasonNoWarmEndpoint surfaces on an Ollama pool's Warm=False when
	// none of its pods is warm, and on a batch's Progressing=False while its
	// items wait for one.
	ReasonNoWarmEndpoint = "NoWarmEndpoint"
	// ReasonNoEndpoints surfaces on Warm=False when no pod matches the
	// pool's selector.
	ReasonNoEndpoints = "NoEndpoints"
	// ReasonNamespaceNotWatched surfaces on Warm=False when the pool's pods
	// are in a namespace outside --ollama-namespaces.
	ReasonNamespaceNotWatched = "NamespaceNotWatched"

	// ReasonAdmitted surfaces on Admitted=True.
	ReasonAdmitted = "Admitted"
	// ReasonRunning surfaces on Progressing=True while items are sent.
	ReasonRunning = "Running"
	// ReasonSuspended surfaces on Suspended=True and Progressing=False
	// while spec.suspend is true.
	ReasonSuspended = "Suspended"
	// ReasonNotSuspended surfaces on Suspended=False.
	ReasonNotSuspended = "NotSuspended"
	// ReasonFailuresBackingOff surfaces on BackingOff=True.
	ReasonFailuresBackingOff = "FailuresBackingOff"
	// ReasonNotBackingOff surfaces on BackingOff=False.
	ReasonNotBackingOff = "NotBackingOff"
	// ReasonItemsPending surfaces on Complete=False while items wait for a
	// result.
	ReasonItemsPending = "ItemsPending"
	// ReasonNoFailure surfaces on Failed=False.
	ReasonNoFailure = "NoFailure"
	// ReasonNotFinished surfaces on Finished=False.
	ReasonNotFinished = "NotFinished"
	// ReasonSucceeded surfaces on Complete=True, Finished=True and
	// Progressing=False when every item succeeded (or reused a result).
	ReasonSucceeded = "Succeeded"

	// ReasonProviderNotFound surfaces on Admitted=False (and
	// Progressing=False) when providerRef names no LLMProvider; the batch
	// is admitted as soon as it appears.
	ReasonProviderNotFound = "ProviderNotFound"
	// ReasonProviderNotReady surfaces on Admitted=False when the provider
	// is not Ready (a missing Secret, a refused key, a fallback loop); the
	// message carries the provider's own reason.
	ReasonProviderNotReady = "ProviderNotReady"
	// ReasonNamespaceNotSelected surfaces on Admitted=False when the
	// provider's spec.namespaceSelector does not select the batch's
	// namespace (or is unset, which selects none); the batch is admitted
	// as soon as the selector or the namespace's labels change to select it.
	ReasonNamespaceNotSelected = "NamespaceNotSelected"
	// ReasonPriorityClassNotFound surfaces on Admitted=False when
	// spec.priorityClassName names no InferencePriorityClass; the batch is
	// admitted as soon as the class exists. A running batch whose class is
	// deleted keeps the priority it was admitted with.
	ReasonPriorityClassNotFound = "PriorityClassNotFound"
	// ReasonNoModel surfaces on Admitted=False when neither the batch's
	// spec.model nor its provider's names a model to call; nothing is sent
	// until one of them does.
	ReasonNoModel = "NoModel"
	// ReasonInvalidItems surfaces on Admitted=False when the items cannot be
	// read (a missing ConfigMap, key, bucket, object or credentials Secret,
	// credentials the store refuses, a bad JSONL line); the message names
	// the object and the line. The items are read again every 30s.
	ReasonInvalidItems = "InvalidItems"
	// ReasonOutputUnavailable surfaces on Admitted=False when the results
	// cannot be written where spec.output says (a missing bucket or
	// credentials Secret, credentials the store refuses); checked again
	// every 30s. On a running batch it surfaces on Progressing=False while
	// its results cannot be written (the bucket deleted, the ConfigMap's
	// namespace terminating): they wait, buffered, and are written as soon
	// as the store takes them.
	ReasonOutputUnavailable = "OutputUnavailable"
	// ReasonEndpointNotAllowed surfaces on Admitted=False when an object
	// storage endpoint the batch names (spec.itemsFrom.s3 or spec.output.s3)
	// is one the manager may not reach: a cluster-internal, loopback or
	// link-local address, or one outside the admin's allow-list (the
	// chart's manager.s3AllowedEndpoints). The message names the endpoint
	// and the address. Checked again every 30s.
	ReasonEndpointNotAllowed = "EndpointNotAllowed"
	// ReasonInputUnavailable surfaces on Progressing=False while the rest
	// of a running batch's input (an object in S3-compatible storage, read
	// as the batch runs) cannot be read: the object vanished or changed
	// since admission, or the store cannot be reached. The message names
	// the object and the last line read; it is read again every 30s, and
	// the results so far are kept.
	ReasonInputUnavailable = "InputUnavailable"
	// ReasonLargeResultsInEtcd is the reason of a Warning Event at
	// admission when a batch of more than 10,000 items writes its results
	// to ConfigMaps (in etcd) rather than object storage.
	ReasonLargeResultsInEtcd = "LargeResultsInEtcd"
	// ReasonDeadlineExceeded surfaces on Failed=True, Finished=True and
	// Progressing=False after activeDeadlineSeconds.
	ReasonDeadlineExceeded = "DeadlineExceeded"
	// ReasonItemsFailed surfaces on Failed=True, Finished=True,
	// Complete=False and Progressing=False when every item has a result and
	// at least one failed after its retries.
	ReasonItemsFailed = "ItemsFailed"
)
