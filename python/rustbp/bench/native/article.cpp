// The article's network as its C++ program is written: one object per node, the 2-2-2 net with the
// article's weights, sigmoid on both layers, E_total = sum_k 1/2 (T_k - out_k)^2, shared biases that are
// not trained, plain SGD with lr 0.5 on the one sample.
//
// Usage: article STEPS EVERY. Runs STEPS iterations of forward + backward, keeps the loss of every
// EVERY-th step and of the last (each taken in that step's forward pass, before its update), then prints
// them as "loss STEP VALUE" and the loop's time as "ns_per_step VALUE". The loop is timed with a steady
// clock; the printing comes after it, so it is not timed.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

class node {
public:
    double value = 0;
    double weight[2] = {0, 0};  // to node 0 and node 1 of the next layer
};

class net {
public:
    node input[2], hidden[2], output[2];
    double lr = 0.5;
    double b1 = 0.35, b2 = 0.60;
    double target[2] = {0.01, 0.99};

    net() {
        input[0].value = 0.05;
        input[1].value = 0.10;
        input[0].weight[0] = 0.15;  // w1: i1 -> h1
        input[1].weight[0] = 0.20;  // w2: i2 -> h1
        input[0].weight[1] = 0.25;  // w3: i1 -> h2
        input[1].weight[1] = 0.30;  // w4: i2 -> h2
        hidden[0].weight[0] = 0.40;  // w5: h1 -> o1
        hidden[1].weight[0] = 0.45;  // w6: h2 -> o1
        hidden[0].weight[1] = 0.50;  // w7: h1 -> o2
        hidden[1].weight[1] = 0.55;  // w8: h2 -> o2
    }

    static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

    // Returns E_total.
    double forward() {
        for (int j = 0; j < 2; j++) {
            double sum = 0;
            for (int i = 0; i < 2; i++) sum += input[i].value * input[i].weight[j];
            hidden[j].value = sigmoid(sum + b1);
        }
        for (int k = 0; k < 2; k++) {
            double sum = 0;
            for (int j = 0; j < 2; j++) sum += hidden[j].value * hidden[j].weight[k];
            output[k].value = sigmoid(sum + b2);
        }
        double error = 0;
        for (int k = 0; k < 2; k++) error += 0.5 * (target[k] - output[k].value) * (target[k] - output[k].value);
        return error;
    }

    void backward() {
        double o1 = output[0].value, o2 = output[1].value, h1 = hidden[0].value, h2 = hidden[1].value;
        double i1 = input[0].value, i2 = input[1].value;
        // Input -> hidden first: each uses the hidden -> output weights from before this step.
        input[0].weight[0] -= lr * ((o1 - target[0]) * o1 * (1 - o1) * hidden[0].weight[0]
                                    + (o2 - target[1]) * o2 * (1 - o2) * hidden[0].weight[1]) * h1 * (1 - h1) * i1;
        input[1].weight[0] -= lr * ((o1 - target[0]) * o1 * (1 - o1) * hidden[0].weight[0]
                                    + (o2 - target[1]) * o2 * (1 - o2) * hidden[0].weight[1]) * h1 * (1 - h1) * i2;
        input[0].weight[1] -= lr * ((o1 - target[0]) * o1 * (1 - o1) * hidden[1].weight[0]
                                    + (o2 - target[1]) * o2 * (1 - o2) * hidden[1].weight[1]) * h2 * (1 - h2) * i1;
        input[1].weight[1] -= lr * ((o1 - target[0]) * o1 * (1 - o1) * hidden[1].weight[0]
                                    + (o2 - target[1]) * o2 * (1 - o2) * hidden[1].weight[1]) * h2 * (1 - h2) * i2;
        // Then hidden -> output.
        hidden[0].weight[0] -= lr * (o1 - target[0]) * o1 * (1 - o1) * h1;
        hidden[1].weight[0] -= lr * (o1 - target[0]) * o1 * (1 - o1) * h2;
        hidden[0].weight[1] -= lr * (o2 - target[1]) * o2 * (1 - o2) * h1;
        hidden[1].weight[1] -= lr * (o2 - target[1]) * o2 * (1 - o2) * h2;
    }
};

int main(int argc, char** argv) {
    long steps = argc > 1 ? atol(argv[1]) : 10000;
    long every = argc > 2 ? atol(argv[2]) : 1000;
    if (steps < 1 || every < 1) {
        fprintf(stderr, "usage: article STEPS EVERY (both at least 1)\n");
        return 2;
    }
    net n;
    std::vector<long> at;
    std::vector<double> losses;
    at.reserve(steps / every + 2);
    losses.reserve(steps / every + 2);
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < steps; i++) {
        double error = n.forward();
        if (i % every == 0 || i == steps - 1) {
            at.push_back(i);
            losses.push_back(error);
        }
        n.backward();
    }
    auto t1 = std::chrono::steady_clock::now();
    for (size_t s = 0; s < at.size(); s++) printf("loss %ld %.17g\n", at[s], losses[s]);
    printf("ns_per_step %.6g\n", std::chrono::duration<double, std::nano>(t1 - t0).count() / steps);
    return 0;
}
