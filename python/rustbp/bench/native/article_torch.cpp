// The article's PyTorch setting written the way its C++ program is: one object per node, the 2-2-2 net on
// the article's sample, sigmoid on both layers, MSE loss (the mean of (T_k - out_k)^2 over the two
// outputs), a trained bias per neuron, SGD with lr 0.5 and momentum 0.9 as torch.optim.SGD does it
// (v = 0.9 v + dE/dw, w -= lr v).
//
// Usage: article_torch STEPS EVERY < weights. The weights come on stdin as twelve numbers in rustbp's
// layout: w1 (hidden j, input i) row by row, b1, w2 (output k, hidden j) row by row, b2. Prints the
// loss of every EVERY-th step and of the last as "loss STEP VALUE" and the loop's time as
// "ns_per_step VALUE", timed with a steady clock, printing excluded.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

class node {
public:
    double value = 0;
    double weight[2] = {0, 0};  // to node 0 and node 1 of the next layer
    double grad[2] = {0, 0};
    double velocity[2] = {0, 0};
    double bias = 0;  // into this node
    double bias_grad = 0;
    double bias_velocity = 0;
};

class net {
public:
    node input[2], hidden[2], output[2];
    double lr = 0.5, momentum = 0.9;
    double target[2] = {0.01, 0.99};

    static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

    // Returns the MSE loss.
    double forward() {
        for (int j = 0; j < 2; j++) {
            double sum = 0;
            for (int i = 0; i < 2; i++) sum += input[i].value * input[i].weight[j];
            hidden[j].value = sigmoid(sum + hidden[j].bias);
        }
        for (int k = 0; k < 2; k++) {
            double sum = 0;
            for (int j = 0; j < 2; j++) sum += hidden[j].value * hidden[j].weight[k];
            output[k].value = sigmoid(sum + output[k].bias);
        }
        double error = 0;
        for (int k = 0; k < 2; k++) error += (target[k] - output[k].value) * (target[k] - output[k].value) / 2;
        return error;
    }

    void backward() {
        double o1 = output[0].value, o2 = output[1].value, h1 = hidden[0].value, h2 = hidden[1].value;
        double i1 = input[0].value, i2 = input[1].value;
        // dE/dout_k = 2 (out_k - T_k) / 2: the mean over two outputs halves the square's factor 2.
        double d1 = (o1 - target[0]) * o1 * (1 - o1), d2 = (o2 - target[1]) * o2 * (1 - o2);
        // Every gradient first, from the weights before this step, then every update.
        input[0].grad[0] = (d1 * hidden[0].weight[0] + d2 * hidden[0].weight[1]) * h1 * (1 - h1) * i1;
        input[1].grad[0] = (d1 * hidden[0].weight[0] + d2 * hidden[0].weight[1]) * h1 * (1 - h1) * i2;
        input[0].grad[1] = (d1 * hidden[1].weight[0] + d2 * hidden[1].weight[1]) * h2 * (1 - h2) * i1;
        input[1].grad[1] = (d1 * hidden[1].weight[0] + d2 * hidden[1].weight[1]) * h2 * (1 - h2) * i2;
        hidden[0].bias_grad = (d1 * hidden[0].weight[0] + d2 * hidden[0].weight[1]) * h1 * (1 - h1);
        hidden[1].bias_grad = (d1 * hidden[1].weight[0] + d2 * hidden[1].weight[1]) * h2 * (1 - h2);
        hidden[0].grad[0] = d1 * h1;
        hidden[1].grad[0] = d1 * h2;
        hidden[0].grad[1] = d2 * h1;
        hidden[1].grad[1] = d2 * h2;
        output[0].bias_grad = d1;
        output[1].bias_grad = d2;
        for (int l = 0; l < 2; l++) {
            node* layer = l == 0 ? input : hidden;
            node* next = l == 0 ? hidden : output;
            for (int a = 0; a < 2; a++) {
                for (int b = 0; b < 2; b++) {
                    layer[a].velocity[b] = momentum * layer[a].velocity[b] + layer[a].grad[b];
                    layer[a].weight[b] -= lr * layer[a].velocity[b];
                }
                next[a].bias_velocity = momentum * next[a].bias_velocity + next[a].bias_grad;
                next[a].bias -= lr * next[a].bias_velocity;
            }
        }
    }
};

int main(int argc, char** argv) {
    long steps = argc > 1 ? atol(argv[1]) : 5000;
    long every = argc > 2 ? atol(argv[2]) : 1000;
    if (steps < 1 || every < 1) {
        fprintf(stderr, "usage: article_torch STEPS EVERY < weights (both at least 1)\n");
        return 2;
    }
    net n;
    n.input[0].value = 0.05;
    n.input[1].value = 0.10;
    double w[12];
    for (double& v : w) {
        if (scanf("%lf", &v) != 1) {
            fprintf(stderr, "article_torch: expected twelve numbers on stdin (w1, b1, w2, b2)\n");
            return 2;
        }
    }
    for (int j = 0; j < 2; j++) {
        for (int i = 0; i < 2; i++) n.input[i].weight[j] = w[2 * j + i];
        n.hidden[j].bias = w[4 + j];
    }
    for (int k = 0; k < 2; k++) {
        for (int j = 0; j < 2; j++) n.hidden[j].weight[k] = w[6 + 2 * k + j];
        n.output[k].bias = w[10 + k];
    }
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
