package v1alpha1

// Decimal is an exact non-negative decimal number written as a string, such
// as "0.20" or "5.00". The API uses it for money and scores instead of
// floats, which round and differ between languages.
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9]{1,15}([.][0-9]{1,12})?$')",message="must be a non-negative decimal number such as \"5.00\""
type Decimal string

// Score is a decimal string between 0 and 1 inclusive, such as "0.20".
// +kubebuilder:validation:MaxLength=16
// +kubebuilder:validation:XValidation:rule="self.matches('^(0([.][0-9]{1,12})?|1([.]0{1,12})?)$')",message="must be a decimal between 0 and 1, such as \"0.20\""
type Score string

// LocalObjectName is the name of another object, as Kubernetes names go.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
type LocalObjectName string
